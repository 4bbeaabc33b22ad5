//! `GET /v1/changes`: a client's catch-up, its own changes only.

use http::Method;
use serde_json::{Value, json};

use std::time::Duration;

use todo_auth::SystemClock;
use todo_core::Clock as _;
use todo_core::TaskStore as _;

use crate::harness::{Deployment, Options, System, on_every_deployment, spawn};

on_every_deployment!(
    changes_list_every_write_in_order_for_its_owner_only,
    bad_change_queries_are_refused,
    a_cursor_behind_the_retention_gets_410_and_a_fresh_start_works,
);

async fn changes(sys: &System, token: &str, query: &str) -> (u16, Value) {
    let path = format!("/v1/changes{query}");
    let reply = sys
        .tasks
        .client
        .json(Method::GET, &path, Some(token), None)
        .await
        .unwrap();
    (reply.status.as_u16(), reply.json().unwrap_or(Value::Null))
}

async fn changes_list_every_write_in_order_for_its_owner_only(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let client = &sys.tasks.client;
    let created = sys
        .post(client, "/v1/tasks", Some(&alice), json!({"title": "first"}))
        .await
        .json()
        .unwrap();
    let path = format!("/v1/tasks/{}", created["id"].as_str().unwrap());
    let patched = client
        .json(
            Method::PATCH,
            &path,
            Some(&alice),
            Some(&json!({"done": true})),
        )
        .await
        .unwrap();
    assert_eq!(patched.status, 200);
    let deleted = client.json(Method::DELETE, &path, Some(&alice), None).await;
    assert_eq!(deleted.unwrap().status, 204);
    let second = sys
        .post(
            client,
            "/v1/tasks",
            Some(&alice),
            json!({"title": "second"}),
        )
        .await
        .json()
        .unwrap();

    let (status, all) = changes(&sys, &alice, "").await;
    assert_eq!(status, 200, "{all}");
    let items = all["items"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = items
        .iter()
        .map(|c| (c["type"].as_str().unwrap(), c["id"].as_str().unwrap()))
        .collect();
    let (first_id, second_id) = (
        created["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    assert_eq!(
        seen,
        [
            ("task.created", first_id),
            ("task.updated", first_id),
            ("task.deleted", first_id),
            ("task.created", second_id),
        ]
    );
    // Each change carries the task as it left it; a deletion, none.
    assert_eq!(items[0]["object"], created);
    assert_eq!(items[1]["object"], patched.json().unwrap());
    assert_eq!(items[2]["object"], Value::Null);
    assert_eq!(items[3]["object"], second);
    assert_eq!(all["next_cursor"], items[3]["cursor"]);

    // From a change's cursor: what came after it, a page at a time.
    let since = items[1]["cursor"].as_str().unwrap();
    let (status, page) = changes(&sys, &alice, &format!("?since={since}&limit=1")).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["type"], "task.deleted");
    let next = page["next_cursor"].as_str().unwrap();
    let (_, rest) = changes(&sys, &alice, &format!("?since={next}")).await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["id"], second_id);
    // Caught up: nothing, and the same cursor to ask with later.
    let end = rest["next_cursor"].as_str().unwrap();
    let (status, none) = changes(&sys, &alice, &format!("?since={end}")).await;
    assert_eq!((status, none["items"].as_array().unwrap().len()), (200, 0));
    assert_eq!(none["next_cursor"], end);

    // Bob sees none of it, and Alice's cursor is not his to use.
    let (status, his) = changes(&sys, &bob, "").await;
    assert_eq!((status, his["items"].as_array().unwrap().len()), (200, 0));
    let (status, refused) = changes(&sys, &bob, &format!("?since={since}")).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "since", "{refused}");
    assert!(!refused.to_string().contains(first_id));
}

async fn bad_change_queries_are_refused(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    for query in [
        "?since=nonsense",
        "?since=",
        "?limit=0",
        "?limit=101",
        "?limit=ten",
        "?cursor=x",
        "?since=AQAAAAAAAAABAAAAAA&since=AQAAAAAAAAABAAAAAA",
    ] {
        let (status, body) = changes(&sys, &alice, query).await;
        assert_eq!(status, 400, "{query}: {body}");
    }
    let reply = sys
        .tasks
        .client
        .json(Method::GET, "/v1/changes", None, None)
        .await
        .unwrap();
    assert_eq!(reply.status, 401);
}

async fn a_cursor_behind_the_retention_gets_410_and_a_fresh_start_works(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    for title in ["one", "two"] {
        let reply = sys
            .post(client, "/v1/tasks", Some(&alice), json!({"title": title}))
            .await;
        assert_eq!(reply.status, 201);
    }
    let (_, before) = changes(&sys, &alice, "").await;
    let first = before["items"][0]["cursor"].as_str().unwrap().to_owned();

    // The operator's retention job runs: everything recorded so far is older
    // than its horizon.
    let horizon = SystemClock.now().saturating_add(Duration::from_secs(1));
    assert_eq!(sys.store().prune_changes(horizon).unwrap(), 2);

    // A client that saw only the first change has missed the second: 410,
    // a problem that says to list the tasks again, and no task data.
    let (status, gone) = changes(&sys, &alice, &format!("?since={first}")).await;
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["type"], "urn:todo:problem:changes-gone", "{gone}");
    assert!(!gone.to_string().contains("two"), "{gone}");
    // Without a cursor the client starts afresh: no changes kept, and a
    // cursor from which the next write is seen.
    let (status, fresh) = changes(&sys, &alice, "").await;
    assert_eq!(
        (status, fresh["items"].as_array().unwrap().len()),
        (200, 0),
        "{fresh}"
    );
    let resume = fresh["next_cursor"].as_str().unwrap().to_owned();
    let reply = sys
        .post(client, "/v1/tasks", Some(&alice), json!({"title": "three"}))
        .await;
    assert_eq!(reply.status, 201);
    let (status, after) = changes(&sys, &alice, &format!("?since={resume}")).await;
    assert_eq!(status, 200, "{after}");
    let items = after["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{after}");
    assert_eq!(items[0]["object"]["title"], "three");
}
