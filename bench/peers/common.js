// What both peers share: the message shape of the engine's wire contract, history of 50 kept in
// memory per room, and the "listening addr=" line the bench scripts wait for.
"use strict";
const crypto = require("crypto");

const HISTORY = 50;

// The engine's public author id: the first 16 hex digits of SHA-256 over a prefix and the id.
function authorId(anonymousId) {
  return crypto.createHash("sha256").update("chat-author:" + anonymousId).digest("hex").slice(0, 16);
}

class Room {
  constructor(id) {
    this.id = id;
    this.seq = 0;
    this.history = [];
  }

  // Builds the stored message (same fields as the engine's Message) and keeps the latest 50.
  append(member, clientId, content, seq) {
    const message = {
      seq,
      roomId: this.id,
      authorId: member.authorId,
      nickname: member.nickname,
      avatar: member.avatar,
      content: String(content).trim(),
      createdAt: new Date().toISOString(),
      clientId,
    };
    this.history.push(message);
    if (this.history.length > HISTORY) this.history.shift();
    return message;
  }
}

function listen(server) {
  server.listen(Number(process.env.PORT || 0), "127.0.0.1", () => {
    const { address, port } = server.address();
    console.log(`listening addr=${address}:${port}`);
  });
}

module.exports = { authorId, Room, listen };
