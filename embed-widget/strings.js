// Strings: every text the widget shows, in Korean and English, and the avatar animals. Data only.

export const ANIMALS = {
  otter: "🦦", fox: "🦊", panda: "🐼", koala: "🐨", rabbit: "🐰", cat: "🐱", dog: "🐶",
  owl: "🦉", tiger: "🐯", whale: "🐳", seal: "🦭", bear: "🐻", frog: "🐸", wolf: "🐺",
};

// English animal names stay at <= 5 letters so "Anonymous {animal}" fits the 15-character limit.
export const STRINGS = {
  en: {
    title: "Post discussion", placeholder: "Write a message…", inputLabel: "Message", send: "Send",
    online: (n) => `${n} online`, onlineUnknown: "— online", typing: (who) => `${who} is typing…`,
    people: "People in this chat", more: (n) => `and ${n} more`, you: "you",
    tabOnly: "Your name is kept in this tab only: this browser blocks storage for embedded pages.",
    connecting: "Connecting…", reconnecting: "Reconnecting…", offline: "Not connected.",
    badRoom: "This chat room does not exist.",
    newMsgs: (n) => (n === 1 ? "1 new message ↓" : `${n} new messages ↓`), newMany: (n) => `${n} new messages`,
    sending: "Sending…", retry: "Retry", discard: "Discard", del: "Delete", delSure: "Delete?", justNow: "just now",
    nickLabel: "Choose a nickname", nickSave: "Save", cancel: "Cancel", changeNick: "Change nickname",
    avatarLabel: (a) => `Avatar: ${a}. Pick another`,
    nickRule: "Nickname must be 2–15 characters, without control characters.",
    slowDown: (s) => `Slow down — try again in ${s} s`,
    slowMode: (s) => `Slow mode: one message every ${s} s`,
    spam: {
      links: "New here? You can post links after a few messages or a few minutes.",
      blocked_words: "This message contains a word that isn't allowed here.",
      repeated: "This message has already been posted too many times.",
      other: "This message looks like spam.",
    },
    anon: (a) => `Anonymous ${a}`,
    empty: "No messages yet — say hello!", closed: "This discussion is closed.", pinned: "Pinned",
    report: "Report", reportSure: "Report?", reported: "Reported", thanksReport: "Thanks — the blog owner will take a look.",
    moderate: "Moderate", modStop: "Stop moderating", moderateTitle: "For the blog owner: moderate this chat",
    lock: "Close discussion", reopen: "Reopen discussion",
    reply: "Reply", edit: "Edit", edited: "(edited)",
    animals: {
      otter: "Otter", fox: "Fox", panda: "Panda", koala: "Koala", rabbit: "Bunny", cat: "Cat", dog: "Dog",
      owl: "Owl", tiger: "Tiger", whale: "Whale", seal: "Seal", bear: "Bear", frog: "Frog", wolf: "Wolf",
    },
    errors: {
      rate_limited: "You're sending too fast. Try again in a moment.", invalid_content: "Messages must be 1–2000 characters.",
      banned: "You can't take part in this chat.", room_locked: "This discussion is closed.", forbidden: "You can only delete your own messages.",
      not_found: "That message no longer exists.", edit_expired: "A message can only be edited in the first few minutes.", unavailable: "Chat is temporarily unavailable.", internal: "Something went wrong.",
    },
  },
  ko: {
    title: "게시글 토론", placeholder: "메시지를 입력하세요…", inputLabel: "메시지", send: "보내기",
    online: (n) => `${n}명 접속 중`, onlineUnknown: "접속 인원 —", typing: (who) => `${who}님이 입력 중…`,
    people: "이 채팅의 참여자", more: (n) => `외 ${n}명`, you: "나",
    tabOnly: "이 브라우저가 삽입된 페이지의 저장소를 막아서, 닉네임은 이 탭에서만 유지돼요.",
    connecting: "연결 중…", reconnecting: "다시 연결하는 중…", offline: "연결되어 있지 않아요.",
    badRoom: "존재하지 않는 채팅방이에요.",
    newMsgs: (n) => `새 메시지 ${n}개 ↓`, newMany: (n) => `새 메시지 ${n}개`,
    sending: "보내는 중…", retry: "다시 시도", discard: "지우기", del: "삭제", delSure: "삭제할까요?", justNow: "방금",
    nickLabel: "닉네임을 정해 주세요", nickSave: "저장", cancel: "취소", changeNick: "닉네임 바꾸기",
    avatarLabel: (a) => `아바타: ${a}. 다른 동물 고르기`,
    nickRule: "닉네임은 제어 문자 없이 2–15자여야 해요.",
    slowDown: (s) => `천천히 보내 주세요 — ${s}초 후에 다시 시도하세요`,
    slowMode: (s) => `슬로 모드: ${s}초에 한 번만 보낼 수 있어요`,
    spam: {
      links: "처음 오셨나요? 메시지를 몇 개 보내거나 몇 분 지나면 링크를 올릴 수 있어요.",
      blocked_words: "허용되지 않는 단어가 들어 있어요.",
      repeated: "같은 메시지가 이미 너무 많이 올라왔어요.",
      other: "스팸으로 보이는 메시지예요.",
    },
    anon: (a) => `익명의 ${a}`,
    empty: "아직 메시지가 없어요 — 먼저 인사해 보세요!", closed: "토론이 닫혔습니다.", pinned: "고정된 메시지",
    report: "신고", reportSure: "신고할까요?", reported: "신고됨", thanksReport: "신고했어요. 블로그 운영자가 확인할 거예요.",
    moderate: "관리", modStop: "관리 끝내기", moderateTitle: "블로그 운영자용: 이 채팅 관리하기",
    lock: "토론 닫기", reopen: "토론 다시 열기",
    reply: "답장", edit: "수정", edited: "(수정됨)",
    animals: {
      otter: "수달", fox: "여우", panda: "판다", koala: "코알라", rabbit: "토끼", cat: "고양이", dog: "강아지",
      owl: "부엉이", tiger: "호랑이", whale: "고래", seal: "물범", bear: "곰", frog: "개구리", wolf: "늑대",
    },
    errors: {
      rate_limited: "너무 빨리 보내고 있어요. 잠시 후 다시 시도하세요.", invalid_content: "메시지는 1–2000자여야 해요.",
      banned: "이 채팅에 참여할 수 없어요.", room_locked: "토론이 닫혔습니다.", forbidden: "내 메시지만 삭제할 수 있어요.",
      not_found: "이미 없는 메시지예요.", edit_expired: "메시지는 보낸 뒤 몇 분 동안만 수정할 수 있어요.", unavailable: "채팅을 일시적으로 사용할 수 없어요.", internal: "문제가 발생했어요.",
    },
  },
};

// `lang=ko|en` from the page's query wins; otherwise the browser's language.
export const pickLang = (asked, browser) => (["ko", "en"].includes(asked) ? asked : /^ko\b/i.test(browser || "") ? "ko" : "en");
