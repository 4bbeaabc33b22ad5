//! Every row of the task-server contract, with its error statuses.

use http::Method;
use serde_json::{Value, json};

use crate::harness::{Deployment, Options, System, on_every_deployment, spawn};

on_every_deployment!(
    tasks_are_created_read_and_listed_by_their_owner_only,
    patches_merge_and_honour_if_match,
    deletes_honour_if_match,
    lists_filter_sort_and_page,
    bad_list_queries_are_refused,
    task_bodies_are_validated,
    pages_of_large_tasks_and_projects_are_cut_at_their_byte_budget,
);

async fn create(sys: &System, token: &str, body: Value) -> Value {
    let reply = sys
        .post(&sys.tasks.client, "/v1/tasks", Some(token), body)
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.json().unwrap()
}

async fn tasks_are_created_read_and_listed_by_their_owner_only(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let client = &sys.tasks.client;
    let reply = sys
        .post(client, "/v1/tasks", Some(&alice), json!({"title": "Buy milk", "done": true, "labels": ["home"], "priority": 2, "due_at": "2026-12-01T10:00:00+01:00"}))
        .await;
    assert_eq!(reply.status, 201);
    let task = reply.json().unwrap();
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    assert_eq!(reply.headers["location"], path.as_str());
    assert_eq!(reply.headers["etag"], "\"v1\"");
    assert_eq!(task["version"], 1);
    assert_eq!(task["due_at"], "2026-12-01T09:00:00Z");
    assert!(
        task["completed_at"].is_string(),
        "created done: completed_at is set"
    );
    assert_eq!(task["description"], "");
    assert_eq!(task["archived"], false);

    let got = client
        .json(Method::GET, &path, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["etag"], "\"v1\"");
    assert_eq!(got.json().unwrap(), task);

    // Bob: never 403, never 200 — another user's task does not exist for him.
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"title": "mine"}));
        let reply = client
            .json(method.clone(), &path, Some(&bob), body.as_ref())
            .await
            .unwrap();
        assert_eq!(reply.status, 404, "{method}");
    }
    let bobs = client
        .json(Method::GET, "/v1/tasks", Some(&bob), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        bobs,
        json!({"items": [], "next_cursor": null}),
        "lists never leak, never null"
    );
    assert_eq!(
        client
            .json(Method::GET, "/v1/tasks/not-a-uuid", Some(&alice), None)
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        client
            .json(Method::GET, "/v1/tasks", None, None)
            .await
            .unwrap()
            .status,
        401
    );
    let query_token = format!("/v1/tasks?access_token={alice}");
    assert_eq!(
        client
            .json(Method::GET, &query_token, None, None)
            .await
            .unwrap()
            .status,
        401,
        "never from the query string"
    );
}

async fn patches_merge_and_honour_if_match(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let task = create(&sys, &alice, json!({"title": "Write report", "description": "draft", "labels": ["work"], "due_at": "2026-12-24T18:00:00Z", "priority": 3})).await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());

    let patch = |body: Value, if_match: Option<&'static str>| {
        let token = format!("Bearer {alice}");
        let body = serde_json::to_vec(&body).unwrap();
        let path = path.clone();
        async move {
            let mut headers = vec![
                ("authorization", token.as_str()),
                ("content-type", "application/merge-patch+json"),
            ];
            if let Some(tag) = if_match {
                headers.push(("if-match", tag));
            }
            client
                .send(Method::PATCH, &path, &headers, Some(body))
                .await
                .unwrap()
        }
    };
    let done = patch(json!({"done": true}), Some("\"v1\"")).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.headers["etag"], "\"v2\"");
    let done = done.json().unwrap();
    assert_eq!(
        (
            done["done"].as_bool(),
            done["version"].as_i64(),
            done["title"].as_str()
        ),
        (Some(true), Some(2), Some("Write report"))
    );
    assert!(done["completed_at"].is_string());

    let stale = patch(json!({"title": "lost update"}), Some("\"v1\"")).await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.headers["etag"], "\"v2\"");
    assert_eq!(
        patch(json!({"title": "x"}), Some("garbage")).await.status,
        412
    );

    let cleared = patch(json!({"due_at": null, "labels": null, "description": null, "priority": null, "done": false}), None).await;
    assert_eq!(cleared.status, 200);
    let cleared = cleared.json().unwrap();
    assert_eq!(cleared["due_at"], Value::Null);
    assert_eq!(cleared["labels"], json!([]));
    assert_eq!(cleared["description"], "");
    assert_eq!(cleared["priority"], 0);
    assert_eq!(
        cleared["completed_at"],
        Value::Null,
        "undone: completed_at cleared"
    );
    assert_eq!(cleared["version"], 3);

    assert_eq!(patch(json!({"title": null}), None).await.status, 400);
    assert_eq!(patch(json!({"title": "   "}), None).await.status, 400);
    assert_eq!(
        patch(json!({"version": 99}), None).await.status,
        400,
        "version is not writable"
    );
    assert_eq!(
        patch(json!({"archived": true}), Some("*")).await.status,
        200
    );
}

async fn deletes_honour_if_match(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let task = create(&sys, &alice, json!({"title": "temporary"})).await;
    let path = format!("/v1/tasks/{}", task["id"].as_str().unwrap());
    let auth = format!("Bearer {alice}");
    let stale = client
        .send(
            Method::DELETE,
            &path,
            &[("authorization", &auth), ("if-match", "\"v7\"")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(stale.status, 412);
    assert_eq!(
        client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap()
            .status,
        200,
        "kept"
    );
    let gone = client
        .send(
            Method::DELETE,
            &path,
            &[("authorization", &auth), ("if-match", "\"v1\"")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 204);
    assert_eq!(
        client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        client
            .json(Method::DELETE, &path, Some(&alice), None)
            .await
            .unwrap()
            .status,
        404
    );
}

async fn lists_filter_sort_and_page(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let specs = [
        json!({"title": "Buy milk", "labels": ["home"], "due_at": "2026-01-10T00:00:00Z", "priority": 1}),
        json!({"title": "Pay 100% of rent", "labels": ["home", "money"], "due_at": "2026-01-05T00:00:00Z", "priority": 3}),
        json!({"title": "Write report", "labels": ["work"], "done": true, "priority": 2}),
        json!({"title": "Old thing", "archived": true}),
        json!({"title": "snake_case notes", "description": "ÜBER wichtig"}),
    ];
    for spec in specs {
        create(&sys, &alice, spec).await;
    }
    let titles = |query: &'static str| {
        let alice = alice.clone();
        async move {
            let reply = client
                .json(
                    Method::GET,
                    &format!("/v1/tasks{query}"),
                    Some(&alice),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{query}: {:?}", reply.body);
            let body = reply.json().unwrap();
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        titles("").await,
        [
            "snake_case notes",
            "Write report",
            "Pay 100% of rent",
            "Buy milk"
        ]
    );
    assert_eq!(titles("?archived=true").await, ["Old thing"]);
    assert_eq!(titles("?done=true").await, ["Write report"]);
    assert_eq!(
        titles("?label=home&sort=created").await,
        ["Buy milk", "Pay 100% of rent"]
    );
    assert_eq!(titles("?q=100%25").await, ["Pay 100% of rent"]);
    assert_eq!(
        titles("?q=_").await,
        ["snake_case notes"],
        "_ matches only itself"
    );
    assert_eq!(
        titles("?q=%C3%BCber").await,
        ["snake_case notes"],
        "case-insensitive, Unicode"
    );
    assert_eq!(
        titles("?sort=due").await,
        [
            "Pay 100% of rent",
            "Buy milk",
            "Write report",
            "snake_case notes"
        ],
        "no due date last"
    );
    assert_eq!(
        titles("?sort=-due").await,
        [
            "snake_case notes",
            "Write report",
            "Buy milk",
            "Pay 100% of rent"
        ]
    );
    assert_eq!(
        titles("?due_before=2026-01-10T00:00:00Z").await,
        ["Pay 100% of rent"],
        "strict"
    );
    assert_eq!(
        titles("?due_after=2026-01-05T00:00:00Z").await,
        ["Buy milk"]
    );
    assert_eq!(titles("?sort=-priority").await[0], "Pay 100% of rent");

    let mut seen = Vec::new();
    let mut path = "/v1/tasks?limit=1&sort=created".to_owned();
    loop {
        let page = client
            .json(Method::GET, &path, Some(&alice), None)
            .await
            .unwrap()
            .json()
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/tasks?limit=1&sort=created&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "Buy milk",
            "Pay 100% of rent",
            "Write report",
            "snake_case notes"
        ]
    );
}

async fn bad_list_queries_are_refused(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let page = sys
        .tasks
        .client
        .json(Method::GET, "/v1/tasks?limit=1", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "limit=99999999999999999999",
        "done=maybe",
        "archived=1",
        "sort=title",
        "cursor=garbage",
        "due_before=yesterday",
        "due_after=2026-13-01T00:00:00Z",
        "label=",
        "q=",
        "unknown=1",
        "done=true&done=false",
    ] {
        let reply = sys
            .tasks
            .client
            .json(
                Method::GET,
                &format!("/v1/tasks?{query}"),
                Some(&alice),
                None,
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{query}: {:?}", reply.body);
        assert_eq!(reply.headers["content-type"], "application/problem+json");
    }
}

async fn task_bodies_are_validated(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let cases = [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(201)}), "title"),
        (
            json!({"title": "ok", "description": "d".repeat(10_001)}),
            "description",
        ),
        (json!({"title": "ok", "priority": 4}), "priority"),
        (json!({"title": "ok", "labels": ["a", "a"]}), "labels"),
        (
            json!({"title": "ok", "labels": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}),
            "labels",
        ),
        (json!({"title": "ok", "due_at": "soon"}), "due_at"),
        (json!({"title": "ok", "owner": "someone"}), "owner"),
    ];
    for (body, field) in cases {
        let reply = sys
            .post(client, "/v1/tasks", Some(&alice), body.clone())
            .await;
        assert_eq!(reply.status, 400, "{body}");
        let problem = reply.json().unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    let wrong_type = sys
        .post(
            client,
            "/v1/tasks",
            Some(&alice),
            json!({"title": "ok", "priority": "high"}),
        )
        .await;
    assert_eq!(wrong_type.status, 400);
    let list = client
        .json(Method::GET, "/v1/tasks", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["items"], json!([]), "nothing was stored");
}

/// Follows `path`'s pages (`items` and `next_cursor`; for `/v1/changes`,
/// until a page is empty) as `token`: the ids in the order seen, and the
/// number of pages. Each answer is within the page's byte budget.
async fn every_page(sys: &System, token: &str, path: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages, mut cursor) = (Vec::new(), 0, None::<String>);
    let changes = path.starts_with("/v1/changes");
    loop {
        let at = match (&cursor, changes) {
            (None, _) => path.to_owned(),
            (Some(c), false) => format!("{path}&cursor={c}"),
            (Some(c), true) => format!("{path}&since={c}"),
        };
        let reply = sys
            .tasks
            .client
            .json(Method::GET, &at, Some(token), None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{at}: {:?}", reply.body);
        assert!(
            reply.body.len() <= todo_core::PAGE_BYTES,
            "{at}: a page of {} bytes",
            reply.body.len()
        );
        let page = reply.json().unwrap();
        let items = page["items"].as_array().unwrap();
        if changes && items.is_empty() {
            break;
        }
        pages += 1;
        ids.extend(
            items
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    (ids, pages)
}

async fn pages_of_large_tasks_and_projects_are_cut_at_their_byte_budget(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    // The longest description, in characters of four bytes: 40 KB a task,
    // about fifty to a page of 2 MiB.
    let description = "\u{1D11E}".repeat(10_000);
    let mut made = std::collections::BTreeSet::new();
    for n in 0..60 {
        let task = create(
            &sys,
            &alice,
            json!({"title": format!("t{n}"), "description": description, "labels": ["big"],
                   "due_at": format!("2031-01-{:02}T09:00:00Z", 1 + n % 28)}),
        )
        .await;
        made.insert(task["id"].as_str().unwrap().to_owned());
    }
    for query in [
        "/v1/tasks?limit=100",
        "/v1/tasks?limit=100&sort=due",
        "/v1/tasks?limit=100&label=big&sort=-due",
    ] {
        let (ids, pages) = every_page(&sys, &alice, query).await;
        assert!(pages >= 2, "{query}: {pages} page");
        assert_eq!(ids.len(), made.len(), "{query}: every task once");
        assert_eq!(
            ids.into_iter().collect::<std::collections::BTreeSet<_>>(),
            made
        );
    }
    let (ids, pages) = every_page(&sys, &alice, "/v1/changes?limit=100").await;
    assert!(pages >= 2, "changes: {pages} page");
    assert_eq!(ids.len(), made.len(), "no change twice");
    assert_eq!(
        ids.into_iter().collect::<std::collections::BTreeSet<_>>(),
        made,
        "each task's creation once"
    );

    // Projects of the longest description likewise.
    for n in 0..60 {
        let made = sys
            .post(
                &sys.tasks.client,
                "/v1/projects",
                Some(&alice),
                json!({"name": format!("p{n}"), "description": description}),
            )
            .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
    }
    let (ids, pages) = every_page(&sys, &alice, "/v1/projects?limit=100").await;
    assert!(pages >= 2, "projects: {pages} page");
    assert_eq!(ids.len(), 61, "the Inbox and sixty");
    let distinct: std::collections::BTreeSet<_> = ids.into_iter().collect();
    assert_eq!(distinct.len(), 61, "each once");

    // The export holds them all, written as it is read.
    let reply = sys
        .tasks
        .client
        .json(Method::GET, "/v1/export", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let export = reply.json().unwrap();
    assert_eq!(export["projects"].as_array().unwrap().len(), 61);
    assert_eq!(export["tasks"].as_array().unwrap().len(), 60);
}
