"""A little real traffic for the monitoring tests: readers join two rooms over WebSocket, talk,
resend, break rules (a frame that is not JSON, empty content, a burst over the send limit, a bad
room id over HTTP) and stay connected until `close()`.

Run alone against a running engine: `python ops/tests/traffic.py ws://127.0.0.1:8080`."""

import asyncio
import json
import sys
import urllib.error
import urllib.request
import uuid

import websockets

FRAME_TIMEOUT = 10.0


class Reader:
    """One connected reader: every frame it receives goes to a queue the test reads from."""

    def __init__(self, ws, room):
        self.ws = ws
        self.room = room
        self.frames = asyncio.Queue()
        self.pump = asyncio.create_task(self._pump())

    @classmethod
    async def join(cls, ws_url, room, nickname):
        ws = await websockets.connect(f"{ws_url}/ws/{room}", max_size=1 << 20, open_timeout=FRAME_TIMEOUT)
        reader = cls(ws, room)
        await reader.send({"type": "hello", "anonymousId": str(uuid.uuid4()), "nickname": nickname,
                           "avatar": "otter"})
        await reader.expect(lambda f: f["type"] == "welcome", "welcome")
        return reader

    async def _pump(self):
        try:
            async for raw in self.ws:
                await self.frames.put(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def send(self, frame):
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def expect(self, matches, what):
        """The next frame that `matches`, skipping others (presence, typing, other readers' messages)."""
        async def find():
            while True:
                frame = await self.frames.get()
                if matches(frame):
                    return frame
        try:
            return await asyncio.wait_for(find(), FRAME_TIMEOUT)
        except asyncio.TimeoutError:
            raise AssertionError(f"no {what} within {FRAME_TIMEOUT} s in room {self.room}") from None

    async def say(self, content, client_id=None):
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "send", "clientId": client_id, "content": content})
        return await self.expect(lambda f: f.get("clientId") == client_id and f["type"] in ("ack", "error"),
                                 f"answer to send {client_id}")

    async def close(self):
        await self.ws.close()
        self.pump.cancel()


class Traffic:
    def __init__(self, ws_url, http_url):
        self.ws_url = ws_url
        self.http_url = http_url
        self.readers = []

    async def run(self):
        tag = uuid.uuid4().hex[:8]
        summary = {"joined": 0, "stored": 0, "duplicate": 0, "rate_limited": 0, "errors": {}}
        rooms = [f"ops-{tag}-a"] * 4 + [f"ops-{tag}-b"] * 2
        for i, room in enumerate(rooms):
            self.readers.append(await Reader.join(self.ws_url, room, f"reader {i}"))
            summary["joined"] += 1

        def count_error(code):
            summary["errors"][code] = summary["errors"].get(code, 0) + 1

        # Everyone says a few things and gets acks.
        for round_ in range(3):
            for i, reader in enumerate(self.readers):
                answer = await reader.say(f"message {round_} from reader {i}")
                assert answer["type"] == "ack", answer
                summary["stored"] += 1

        first = self.readers[0]
        # A resend with the same clientId is acked again with the same seq, not stored twice.
        client_id = str(uuid.uuid4())
        original = await first.say("said once", client_id)
        again = await first.say("said once", client_id)
        assert original["type"] == again["type"] == "ack" and original["seq"] == again["seq"], (original, again)
        summary["stored"] += 1
        summary["duplicate"] += 1

        # A frame that is not JSON, and an empty message.
        await self.readers[1].send("this is not json")
        error = await self.readers[1].expect(lambda f: f["type"] == "error", "error for a frame that is not JSON")
        assert error["code"] == "bad_frame", error
        count_error(error["code"])
        answer = await self.readers[2].say("   ")
        assert answer["type"] == "error" and answer["code"] == "invalid_content", answer
        count_error(answer["code"])

        # A burst beyond the send limit (the test engine runs with --send-burst 100).
        burster = self.readers[3]
        ids = [str(uuid.uuid4()) for _ in range(130)]
        for client_id in ids:
            await burster.send({"type": "send", "clientId": client_id, "content": "burst"})
        pending = set(ids)
        while pending:
            frame = await burster.expect(lambda f: f.get("clientId") in pending and f["type"] in ("ack", "error"),
                                         f"answers to the burst ({len(pending)} missing)")
            pending.discard(frame["clientId"])
            if frame["type"] == "ack":
                summary["stored"] += 1
            else:
                assert frame["code"] == "rate_limited", frame
                summary["rate_limited"] += 1
                count_error(frame["code"])
        assert summary["rate_limited"] > 0, "the burst was never rate limited"

        # An HTTP error: a room id with a character outside [A-Za-z0-9._-].
        try:
            urllib.request.urlopen(f"{self.http_url}/api/rooms/bad%20room", timeout=FRAME_TIMEOUT)
            raise AssertionError("a bad room id was accepted")
        except urllib.error.HTTPError as e:
            assert e.code == 400, e.code
            count_error(json.loads(e.read())["error"]["code"])
        return summary

    async def close(self):
        await asyncio.gather(*(r.close() for r in self.readers), return_exceptions=True)


if __name__ == "__main__":
    base = sys.argv[1] if len(sys.argv) > 1 else "ws://127.0.0.1:8080"

    async def main():
        traffic = Traffic(base, base.replace("ws", "http", 1))
        print(await traffic.run())
        await traffic.close()

    asyncio.run(main())
