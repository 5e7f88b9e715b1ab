// The same chat on Socket.IO 4: `hello` joins a Socket.IO room and answers `welcome` with the
// latest 50 messages from memory; `send` (with an acknowledgement callback) appends, acks
// { clientId, seq } to the sender and broadcasts `message` to the room with io.to(room).emit,
// which encodes the packet once for all members. WebSocket transport only, no compression.
//
// With REDIS_URL set it runs as one of several pods: the official Redis adapter carries the
// broadcasts between pods and seq comes from Redis INCR, so seq stays one counter per room across
// pods (history stays per pod, from memory).
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { authorId, Room, listen } = require("./common");

const server = http.createServer((req, res) => {
  res.statusCode = req.url === "/healthz" ? 200 : 404;
  res.end();
});
const io = new Server(server, {
  transports: ["websocket"],
  serveClient: false,
  perMessageDeflate: false,
  maxHttpBufferSize: 16 * 1024,
});
const rooms = new Map(); // id -> Room; kept when empty: memory is the only copy of its history

let nextSeq = async (room) => ++room.seq;

async function useRedis(url) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  nextSeq = (room) => pub.incr(`seq:${room.id}`);
}

io.on("connection", (socket) => {
  let member = null;
  let room = null;
  socket.on("hello", (hello) => {
    if (member || !hello || typeof hello.room !== "string") return;
    member = { authorId: authorId(hello.anonymousId), nickname: hello.nickname, avatar: hello.avatar };
    room = rooms.get(hello.room);
    if (!room) rooms.set(hello.room, (room = new Room(hello.room)));
    socket.join(room.id);
    socket.emit("welcome", { type: "welcome", you: member, history: room.history, online: io.sockets.adapter.rooms.get(room.id)?.size ?? 1 });
  });
  socket.on("send", async (send, ack) => {
    if (!member || !send) return;
    const message = room.append(member, send.clientId, send.content, await nextSeq(room));
    if (typeof ack === "function") ack({ clientId: send.clientId, seq: message.seq });
    io.to(room.id).emit("message", message);
  });
});

(process.env.REDIS_URL ? useRedis(process.env.REDIS_URL) : Promise.resolve())
  .then(() => listen(server))
  .catch((err) => {
    console.error(err);
    process.exit(1);
  });
