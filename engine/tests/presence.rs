//! Presence: who is online in a room, counted per reader (not per tab), in `welcome`, in
//! `presence` frames and in `GET /api/rooms/{id}`, and never revealing an anonymousId.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

/// Waits for a `presence` frame saying `online` and checks its member list against `expected`.
async fn expect_presence(client: &mut Client, online: u64, expected: &[(&Value, &Reader)]) -> Value {
    let presence =
        client.next_where(&format!("presence with online {online}"), |f| frame_type(f) == "presence" && f["online"] == online).await;
    let members = presence["members"].as_array().expect("members array");
    assert_eq!(members.len() as u64, online, "one member entry per reader: {presence}");
    let got: BTreeSet<String> = members.iter().map(|m| m["authorId"].to_string()).collect();
    let want: BTreeSet<String> = expected.iter().map(|(id, _)| id.to_string()).collect();
    assert_eq!(got, want, "members of {presence}");
    for (author_id, reader) in expected {
        let member = members.iter().find(|m| m["authorId"] == **author_id).unwrap();
        assert_eq!(member["nickname"], reader.nickname.as_str(), "{presence}");
        assert_eq!(member["avatar"], reader.avatar.as_str(), "{presence}");
        assert!(!presence.to_string().contains(&reader.anonymous_id), "anonymousId in {presence}");
    }
    presence
}

#[tokio::test]
async fn two_tabs_of_one_reader_count_once() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("두 탭 수달");
    let mut bob = Reader::new("한 탭 여우");
    bob.avatar = "fox".to_string();

    let (mut tab1, first) = engine.join(&room, &alice).await;
    assert_eq!(first["online"], 1);
    let (_tab2, second) = engine.join(&room, &alice).await;
    assert_eq!(second["online"], 1, "a second tab of the same reader: {second}");
    let (_b, welcome) = engine.join(&room, &bob).await;
    assert_eq!(welcome["online"], 2, "2 readers in 3 tabs: {welcome}");

    let alice_id = first["you"]["authorId"].clone();
    let bob_id = welcome["you"]["authorId"].clone();
    expect_presence(&mut tab1, 2, &[(&alice_id, &alice), (&bob_id, &bob)]).await;

    let info = engine.room_info(&room).await;
    assert_eq!(info["online"], 2, "{info}");
    assert_eq!(info["id"], room.as_str());
}

#[tokio::test]
async fn leaving_updates_presence_and_room_info() {
    let engine = Engine::start(&[]);
    let room = room("post");
    let alice = Reader::new("두 탭 수달");
    let bob = Reader::new("남는 여우");
    let carol = Reader::new("새로 온 곰");

    let (tab1, first) = engine.join(&room, &alice).await;
    let (tab2, _) = engine.join(&room, &alice).await;
    let (mut b, welcome) = engine.join(&room, &bob).await;
    let alice_id = first["you"]["authorId"].clone();
    let bob_id = welcome["you"]["authorId"].clone();

    // Closing one of two tabs leaves alice online.
    tab1.close().await;
    let (carol_tab, carol_welcome) = engine.join(&room, &carol).await;
    assert_eq!(carol_welcome["online"], 3, "alice still has a tab open: {carol_welcome}");
    let carol_id = carol_welcome["you"]["authorId"].clone();
    expect_presence(&mut b, 3, &[(&alice_id, &alice), (&bob_id, &bob), (&carol_id, &carol)]).await;

    // Closing the last tab takes her out.
    tab2.close().await;
    expect_presence(&mut b, 2, &[(&bob_id, &bob), (&carol_id, &carol)]).await;
    assert_eq!(engine.room_info(&room).await["online"], 2);

    // A dropped connection (no closing handshake) counts as leaving too.
    drop(carol_tab);
    expect_presence(&mut b, 1, &[(&bob_id, &bob)]).await;
    assert_eq!(engine.room_info(&room).await["online"], 1);
}

#[tokio::test]
async fn a_crowd_joining_at_once_gets_few_capped_presence_frames() {
    // The whole crowd comes from 127.0.0.1: lift the per-address socket cap and join rate.
    let engine = Engine::start(&["--max-connections-per-ip", "1000", "--joins-per-ip", "1000", "--join-burst-per-ip", "1000"]);
    let room = room("hot");
    let (mut watcher, _) = engine.join(&room, &Reader::new("지켜보는 수달")).await;

    let crowd = 150;
    let started = std::time::Instant::now();
    let joins = (0..crowd).map(|i| {
        let engine = &engine;
        let room = room.clone();
        async move { engine.join(&room, &Reader::new(&format!("reader {i}"))).await }
    });
    let tabs = futures_util::future::join_all(joins).await;
    assert_eq!(tabs.len(), crowd);

    // Count the presence frames the first reader gets until the room shows everyone.
    let mut frames = 0;
    let last = loop {
        let presence = watcher.next_of_type("presence").await;
        frames += 1;
        if presence["online"] == (crowd + 1) as u64 {
            break presence;
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    // Coalesced to at most one frame per 500 ms (plus the one already scheduled), not one per join.
    let allowed = (elapsed / 0.5).ceil() as usize + 2;
    assert!(frames <= allowed, "{frames} presence frames for {crowd} joins in {elapsed:.2}s (allowed {allowed})");
    let members = last["members"].as_array().expect("members");
    assert_eq!(members.len(), 100, "the member list is capped, online is not: {}", last["online"]);
    assert_eq!(engine.room_info(&room).await["online"], (crowd + 1) as u64);
}
