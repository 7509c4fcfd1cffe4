//! The security event log on SQL: append and page newest first, counts by kind, device
//! and time, the batched trim, and rows that never hold a secret. Each property runs on
//! SQLite and, when `DATABASE_URL` is set, on PostgreSQL.

use cache_core::{Clock, EventKind, EventLog, ManualClock, NewEvent, UserId};
use cache_sql::SqlStore;
use chrono::Duration as Span;

on_both_backends!(
    events_page_newest_first,
    counts_filter_by_kind_device_and_time,
    trim_deletes_old_events_in_batches
);

fn event(user: i64, kind: EventKind, clock: &ManualClock, device_key: Option<&str>) -> NewEvent {
    NewEvent {
        user: UserId::new(user).unwrap(),
        kind,
        at: clock.now(),
        ip: Some("192.0.2.7".parse().unwrap()),
        device: Some("Firefox on Linux".to_owned()),
        device_key: device_key.map(str::to_owned),
    }
}

async fn events_page_newest_first(store: &SqlStore, clock: &ManualClock) {
    let kinds = [EventKind::SignIn, EventKind::SignOut, EventKind::PasswordChanged];
    for kind in kinds {
        store.append_events(&[event(1, kind, clock, None)]).await.unwrap();
        clock.advance(Span::seconds(1));
    }
    // Another user's events never show.
    store.append_events(&[event(2, EventKind::SignIn, clock, None)]).await.unwrap();
    let user = UserId::new(1).unwrap();
    let all = store.list_events(user, None, 10).await.unwrap();
    let got: Vec<EventKind> = all.iter().map(|e| e.kind).collect();
    assert_eq!(got, [EventKind::PasswordChanged, EventKind::SignOut, EventKind::SignIn]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id && w[0].at > w[1].at));
    assert_eq!(all[0].ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(all[0].device.as_deref(), Some("Firefox on Linux"));
    assert_eq!(all[0].user, user);

    let first = store.list_events(user, None, 2).await.unwrap();
    assert_eq!(first, all[..2]);
    let rest = store.list_events(user, Some(first[1].id), 2).await.unwrap();
    assert_eq!(rest, all[2..]);
    assert!(store.list_events(user, Some(all[2].id), 2).await.unwrap().is_empty());

    // A batch lands in order.
    let batch =
        [event(3, EventKind::SignIn, clock, None), event(3, EventKind::SignOut, clock, None)];
    store.append_events(&batch).await.unwrap();
    let got = store.list_events(UserId::new(3).unwrap(), None, 10).await.unwrap();
    assert_eq!(
        got.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::SignOut, EventKind::SignIn]
    );
    store.append_events(&[]).await.unwrap();
}

async fn counts_filter_by_kind_device_and_time(store: &SqlStore, clock: &ManualClock) {
    let user = UserId::new(7).unwrap();
    let start = clock.now();
    store.append_events(&[event(7, EventKind::SignIn, clock, Some("a"))]).await.unwrap();
    clock.advance(Span::days(2));
    store
        .append_events(&[
            event(7, EventKind::SignIn, clock, Some("b")),
            event(7, EventKind::SignInFailed, clock, None),
        ])
        .await
        .unwrap();
    let count = |kind, key: Option<&'static str>, since| store.count_events(user, kind, key, since);
    assert_eq!(count(EventKind::SignIn, None, None).await.unwrap(), 2);
    assert_eq!(count(EventKind::SignIn, Some("a"), None).await.unwrap(), 1);
    assert_eq!(count(EventKind::SignIn, Some("a"), Some(start + Span::days(1))).await.unwrap(), 0);
    assert_eq!(count(EventKind::SignIn, Some("b"), Some(start + Span::days(1))).await.unwrap(), 1);
    assert_eq!(count(EventKind::SignIn, Some("c"), None).await.unwrap(), 0);
    assert_eq!(count(EventKind::SignInFailed, None, Some(start)).await.unwrap(), 1);
    assert_eq!(count(EventKind::SignOut, None, None).await.unwrap(), 0);
    let other = UserId::new(8).unwrap();
    assert_eq!(store.count_events(other, EventKind::SignIn, None, None).await.unwrap(), 0);
}

async fn trim_deletes_old_events_in_batches(store: &SqlStore, clock: &ManualClock) {
    for _ in 0..5 {
        store.append_events(&[event(9, EventKind::SignIn, clock, None)]).await.unwrap();
    }
    clock.advance(Span::days(10));
    let cutoff = clock.now();
    store.append_events(&[event(9, EventKind::SignOut, clock, None)]).await.unwrap();
    assert_eq!(store.trim_events(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.trim_events(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.trim_events(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.trim_events(cutoff, 2).await.unwrap(), 0);
    let left = store.list_events(UserId::new(9).unwrap(), None, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::SignOut]);
}
