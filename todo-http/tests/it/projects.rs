//! `/v1/projects` and their members: who may do what, as API.md gives it,
//! for every kind of caller (owner, editor, viewer, a removed member, a
//! stranger, an administrator who is not a member).

use http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Deployment, Options, System, on_every_deployment, spawn};

on_every_deployment!(
    every_project_endpoint_answers_each_kind_of_caller_as_api_md_says,
    every_task_endpoint_of_a_shared_project_answers_each_kind_of_caller,
    subtasks_recurrence_and_reminders_round_trip_and_name_bad_input,
    sharing_keeps_the_owner_and_the_inbox_and_names_bad_input,
    project_and_member_changes_reach_each_member_as_api_md_names_them,
    the_export_holds_what_the_caller_owns_as_json_and_icalendar,
    an_import_makes_an_export_the_callers_once_and_all_or_nothing,
    a_projects_feed_is_read_without_an_account_until_it_is_revoked,
);

async fn call(sys: &System, method: Method, path: &str, token: &str, body: Option<Value>) -> u16 {
    sys.tasks
        .client
        .json(method, path, Some(token), body.as_ref())
        .await
        .unwrap()
        .status
        .as_u16()
}

async fn listed(sys: &System, token: &str, id: &str) -> bool {
    let reply = sys
        .tasks
        .client
        .json(Method::GET, "/v1/projects", Some(token), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    reply.json().unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == id)
}

async fn every_project_endpoint_answers_each_kind_of_caller_as_api_md_says(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, owner, _) = sys.user("alice").await;
    let (_, editor, _) = sys.user("bob").await;
    let (_, viewer, _) = sys.user("carol").await;
    let (_, removed, _) = sys.user("dave").await;
    let (_, stranger, _) = sys.user("eve").await;
    sys.user("frank").await;
    let (_, admin) = sys.admin().await;
    let created = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&owner),
            json!({"name": "Garden", "color": "#336699"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let project = created.json().unwrap();
    assert_eq!(project["role"], "owner");
    assert!(created.headers.contains_key("etag"));
    let id = project["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/projects/{id}");
    let members = format!("{one}/members");
    for (name, role) in [("bob", "editor"), ("carol", "viewer"), ("dave", "viewer")] {
        let put = json!({ "role": role });
        let path = format!("{members}/{name}");
        assert_eq!(call(&sys, Method::PUT, &path, &owner, Some(put)).await, 200);
    }
    let dave = format!("{members}/dave");
    assert_eq!(call(&sys, Method::DELETE, &dave, &owner, None).await, 204);

    let callers = [
        ("owner", &owner),
        ("editor", &editor),
        ("viewer", &viewer),
        ("removed member", &removed),
        ("stranger", &stranger),
        ("admin, not a member", &admin),
    ];
    let frank = format!("{members}/frank");
    let feed = format!("{one}/feed");
    // Each request, and what API.md gives each caller, in the order above.
    let matrix = [
        (
            "read the project",
            Method::GET,
            &one,
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            "change the project",
            Method::PATCH,
            &one,
            Some(json!({"description": "tended"})),
            [200, 200, 403, 404, 404, 404],
        ),
        (
            "list the members",
            Method::GET,
            &members,
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            "share it",
            Method::PUT,
            &frank,
            Some(json!({"role": "viewer"})),
            [200, 403, 403, 404, 404, 404],
        ),
        (
            "publish its feed",
            Method::POST,
            &feed,
            None,
            [201, 403, 403, 404, 404, 404],
        ),
        (
            "see its feed",
            Method::GET,
            &feed,
            None,
            [200, 403, 403, 404, 404, 404],
        ),
    ];
    for (what, method, path, body, expected) in matrix {
        for ((who, token), status) in callers.iter().zip(expected) {
            assert_eq!(
                call(&sys, method.clone(), path, token, body.clone()).await,
                status,
                "{who}: {what}"
            );
        }
    }
    // Revoking the feed: the owner only (last: it is then gone).
    for ((who, token), status) in callers.iter().zip([204, 403, 403, 404, 404, 404]).rev() {
        assert_eq!(
            call(&sys, Method::DELETE, &feed, token, None).await,
            status,
            "{who}: revoke the feed"
        );
    }
    // Removing someone else: the owner only (done last, as the member is
    // then gone); and only members see the project in their list.
    for ((who, token), status) in callers.iter().zip([204, 403, 403, 404, 404, 404]).rev() {
        assert_eq!(
            call(&sys, Method::DELETE, &frank, token, None).await,
            status,
            "{who}: remove a member"
        );
    }
    for ((who, token), seen) in callers.iter().zip([true, true, true, false, false, false]) {
        assert_eq!(listed(&sys, token, &id).await, seen, "{who}: the list");
    }
    // Deleting: the owner only.
    for ((who, token), status) in callers.iter().zip([204, 403, 403, 404, 404, 404]).rev() {
        assert_eq!(
            call(&sys, Method::DELETE, &one, token, None).await,
            status,
            "{who}: delete the project"
        );
    }
    for (who, token) in callers {
        assert_eq!(
            call(&sys, Method::GET, &one, token, None).await,
            404,
            "{who}: a deleted project"
        );
    }
}

/// The ids of the tasks in `path`'s answer (a list, or `/v1/changes`).
async fn ids_in(sys: &System, path: &str, token: &str) -> Vec<String> {
    let reply = sys
        .tasks
        .client
        .json(Method::GET, path, Some(token), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{path}");
    reply.json().unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn every_task_endpoint_of_a_shared_project_answers_each_kind_of_caller(
    deployment: Deployment,
) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (alice_id, owner, _) = sys.user("alice").await;
    let (bob_id, editor, _) = sys.user("bob").await;
    let (_, viewer, _) = sys.user("carol").await;
    let (_, removed, _) = sys.user("dave").await;
    let (_, stranger, _) = sys.user("eve").await;
    let (_, admin) = sys.admin().await;
    let created = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&owner),
            json!({"name": "Garden"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let members = format!("/v1/projects/{id}/members");
    for (name, role) in [("bob", "editor"), ("carol", "viewer"), ("dave", "editor")] {
        let path = format!("{members}/{name}");
        let put = Some(json!({ "role": role }));
        assert_eq!(call(&sys, Method::PUT, &path, &owner, put).await, 200);
    }
    // Dave writes while a member, then is removed.
    let daves = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&removed),
            json!({"title": "Dave's", "project_id": id}),
        )
        .await;
    assert_eq!(daves.status, 201, "{:?}", daves.body);
    let dave = format!("{members}/dave");
    assert_eq!(call(&sys, Method::DELETE, &dave, &owner, None).await, 204);

    let callers = [
        ("owner", &owner),
        ("editor", &editor),
        ("viewer", &viewer),
        ("removed member", &removed),
        ("stranger", &stranger),
        ("admin, not a member", &admin),
    ];
    // Creating in the project, by each caller.
    let mut made = Vec::new();
    for ((who, token), status) in callers.iter().zip([201, 201, 403, 404, 404, 404]) {
        let body = json!({"title": format!("by the {who}"), "project_id": id});
        let reply = sys
            .post(&sys.tasks.client, "/v1/tasks", Some(token), body)
            .await;
        assert_eq!(reply.status, status, "{who}: create a task in the project");
        if status == 201 {
            let task = reply.json().unwrap();
            assert_eq!(task["project_id"], id.as_str());
            made.push(task);
        }
    }
    assert_eq!(made[0]["created_by"], alice_id.as_str());
    assert_eq!(made[1]["created_by"], bob_id.as_str());
    let editors = format!("/v1/tasks/{}", made[1]["id"].as_str().unwrap());
    let owners = format!("/v1/tasks/{}", made[0]["id"].as_str().unwrap());
    let matrix = [
        (
            "read a task",
            Method::GET,
            None,
            [200, 200, 200, 404, 404, 404],
        ),
        (
            "change a task",
            Method::PATCH,
            Some(json!({"done": true})),
            [200, 200, 403, 404, 404, 404],
        ),
    ];
    for (what, method, body, expected) in matrix {
        for ((who, token), status) in callers.iter().zip(expected) {
            assert_eq!(
                call(&sys, method.clone(), &editors, token, body.clone()).await,
                status,
                "{who}: {what}"
            );
        }
    }
    // What each caller lists, of the project and of all their tasks: the
    // project's three tasks for its members; for anyone else, the project
    // is not found (404, as everything in it), and none of its tasks is
    // among theirs.
    let project_tasks = format!("/v1/tasks?project={id}");
    for ((who, token), count) in callers.iter().zip([3, 3, 3, 0, 0, 0]) {
        if count > 0 {
            assert_eq!(
                ids_in(&sys, &project_tasks, token).await.len(),
                count,
                "{who}: list"
            );
        } else {
            assert_eq!(
                call(&sys, Method::GET, &project_tasks, token, None).await,
                404,
                "{who}: list"
            );
        }
        let all = ids_in(&sys, "/v1/tasks", token).await;
        assert_eq!(all.len(), count, "{who}: list everything");
    }
    // Deleting: editors and the owner, any task of the project (the
    // others first, while the task is there to be refused).
    for ((who, token), status) in callers[1..].iter().zip([204, 403, 404, 404, 404]).rev() {
        assert_eq!(
            call(&sys, Method::DELETE, &owners, token, None).await,
            status,
            "{who}: delete a task"
        );
    }
    assert_eq!(
        call(&sys, Method::DELETE, &editors, &owner, None).await,
        204
    );
    // No change of the project reaches anyone who is not a member: Dave's
    // stream, once he is removed, holds his removal only (nothing of the
    // project, not even what he saw while a member); members see every
    // change.
    let changes = |token| ids_in(&sys, "/v1/changes", token);
    assert_eq!(changes(&removed).await, [id.as_str()]);
    assert!(changes(&stranger).await.is_empty());
    assert!(changes(&admin).await.is_empty());
    for (who, token) in &callers[..3] {
        let seen = changes(token).await;
        // Dave's creation (for those who were members then), the two
        // creations, the change, the two deletions.
        assert!(seen.len() >= 5, "{who}: {seen:?}");
        assert!(
            seen.contains(&made[1]["id"].as_str().unwrap().to_owned()),
            "{who}"
        );
    }
}

async fn sharing_keeps_the_owner_and_the_inbox_and_names_bad_input(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (alice_id, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let client = &sys.tasks.client;
    // Every account has its Inbox, whose id is the account's.
    let listed = client
        .json(Method::GET, "/v1/projects", Some(&alice), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    assert_eq!(items[0]["id"], alice_id.as_str());
    assert_eq!(
        (items[0]["inbox"].clone(), items[0]["name"].clone()),
        (json!(true), json!("Inbox"))
    );
    let inbox = format!("/v1/projects/{alice_id}");
    let share = Some(json!({"role": "editor"}));
    assert_eq!(
        call(
            &sys,
            Method::PUT,
            &format!("{inbox}/members/bob"),
            &alice,
            share.clone()
        )
        .await,
        409
    );
    assert_eq!(call(&sys, Method::DELETE, &inbox, &alice, None).await, 409);
    assert_eq!(call(&sys, Method::GET, &inbox, &bob, None).await, 404);

    let made = sys
        .post(
            client,
            "/v1/projects",
            Some(&alice),
            json!({"name": "Trip"}),
        )
        .await
        .json()
        .unwrap();
    let one = format!("/v1/projects/{}", made["id"].as_str().unwrap());
    // The owner is neither demoted nor removed; an unknown user is not found.
    let alice_member = format!("{one}/members/alice");
    assert_eq!(
        call(&sys, Method::PUT, &alice_member, &alice, share.clone()).await,
        409
    );
    assert_eq!(
        call(&sys, Method::DELETE, &alice_member, &alice, None).await,
        409
    );
    assert_eq!(
        call(
            &sys,
            Method::PUT,
            &format!("{one}/members/nobody"),
            &alice,
            share.clone()
        )
        .await,
        404
    );
    // Bad input names its field.
    for (body, field) in [
        (json!({"role": "owner"}), "role"),
        (json!({"role": "admin"}), "role"),
    ] {
        let reply = client
            .json(
                Method::PUT,
                &format!("{one}/members/bob"),
                Some(&alice),
                Some(&body),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json().unwrap()["errors"][0]["field"], field, "{body}");
    }
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "ok", "color": "blue"}), "color"),
    ] {
        let reply = client
            .json(Method::POST, "/v1/projects", Some(&alice), Some(&body))
            .await
            .unwrap();
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json().unwrap()["errors"][0]["field"], field, "{body}");
    }
    // A member leaves by themselves, and the project is gone for them.
    assert_eq!(
        call(
            &sys,
            Method::PUT,
            &format!("{one}/members/bob"),
            &alice,
            share
        )
        .await,
        200
    );
    assert_eq!(call(&sys, Method::GET, &one, &bob, None).await, 200);
    assert_eq!(
        call(
            &sys,
            Method::DELETE,
            &format!("{one}/members/bob"),
            &bob,
            None
        )
        .await,
        204
    );
    assert_eq!(call(&sys, Method::GET, &one, &bob, None).await, 404);
    // A stale If-Match is 412, as for tasks; the current one is taken.
    let auth = format!("Bearer {alice}");
    for (tag, status) in [("\"v99\"", 412), ("\"v1\"", 200)] {
        let reply = client
            .send(
                Method::PATCH,
                &one,
                &[
                    ("authorization", &auth),
                    ("if-match", tag),
                    ("content-type", "application/json"),
                ],
                Some(br#"{"name": "Voyage"}"#.to_vec()),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, status, "{tag}: {:?}", reply.body);
    }
}

async fn subtasks_recurrence_and_reminders_round_trip_and_name_bad_input(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let client = &sys.tasks.client;
    let create = |body: Value| sys.post(client, "/v1/tasks", Some(&alice), body);
    let top = create(json!({"title": "Move house"})).await;
    assert_eq!(top.status, 201, "{:?}", top.body);
    let top = top.json().unwrap();
    assert_eq!(top["parent_id"], Value::Null);
    assert_eq!(top["time_zone"], "UTC");
    assert_eq!(top["reminders"], json!([]));
    let child = create(json!({"title": "Pack", "parent_id": top["id"]})).await;
    assert_eq!(child.status, 201, "{:?}", child.body);
    let child = child.json().unwrap();
    assert_eq!(child["parent_id"], top["id"]);
    assert_eq!(child["project_id"], top["project_id"]);
    let grandchild = create(json!({"title": "Books", "parent_id": child["id"]})).await;
    assert_eq!(grandchild.status, 201);
    let grandchild = grandchild.json().unwrap();
    let children = format!("/v1/tasks?parent={}", top["id"].as_str().unwrap());
    assert_eq!(
        ids_in(&sys, &children, &alice).await,
        [child["id"].as_str().unwrap()]
    );

    // Each bad input is refused naming its field.
    let garden = sys
        .post(
            client,
            "/v1/projects",
            Some(&alice),
            json!({"name": "Garden"}),
        )
        .await
        .json()
        .unwrap();
    let many: Vec<Value> = (0..11)
        .map(|m| json!({"before_due": format!("PT{m}M")}))
        .collect();
    for (body, field) in [
        (
            json!({"title": "x", "parent_id": grandchild["id"]}),
            "parent_id",
        ),
        (
            json!({"title": "x", "parent_id": top["id"], "project_id": garden["id"]}),
            "parent_id",
        ),
        (json!({"title": "x", "parent_id": "not-an-id"}), "parent_id"),
        (
            json!({"title": "x", "due_at": "2027-01-04T09:00:00Z", "recurrence": "FREQ=HOURLY"}),
            "recurrence",
        ),
        (
            json!({"title": "x", "recurrence": "FREQ=DAILY"}),
            "recurrence",
        ),
        (
            json!({"title": "x", "time_zone": "Mars/Olympus_Mons"}),
            "time_zone",
        ),
        (
            json!({"title": "x", "due_at": "2027-01-04T09:00:00Z", "reminders": many}),
            "reminders",
        ),
        (
            json!({"title": "x", "reminders": [{"at": "2027-01-04T09:00:00Z", "before_due": "PT1M"}]}),
            "reminders",
        ),
        (
            json!({"title": "x", "reminders": [{"before_due": "PT5M"}]}),
            "reminders",
        ),
    ] {
        let reply = create(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json().unwrap()["errors"][0]["field"], field, "{body}");
    }
    let top_path = format!("/v1/tasks/{}", top["id"].as_str().unwrap());
    let cycle = json!({"parent_id": grandchild["id"]});
    let reply = sys
        .tasks
        .client
        .json(Method::PATCH, &top_path, Some(&alice), Some(&cycle))
        .await
        .unwrap();
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json().unwrap()["errors"][0]["field"], "parent_id");

    // A weekly task on Mondays at 9:00 in Berlin, reminded 15 minutes before.
    let weekly = create(json!({
        "title": "Stand-up",
        "due_at": "2027-03-22T09:00:00+01:00",
        "recurrence": "RRULE:BYDAY=MO;FREQ=WEEKLY",
        "time_zone": "Europe/Berlin",
        "reminders": [{"before_due": "PT15M"}, {"at": "2027-03-20T12:00:00Z"}],
    }))
    .await;
    assert_eq!(weekly.status, 201, "{:?}", weekly.body);
    let weekly = weekly.json().unwrap();
    assert_eq!(weekly["recurrence"], "FREQ=WEEKLY;BYDAY=MO");
    assert_eq!(weekly["time_zone"], "Europe/Berlin");
    assert_eq!(
        weekly["reminders"],
        json!([{"at": "2027-03-20T12:00:00Z"}, {"before_due": "PT15M"}])
    );
    let path = format!("/v1/tasks/{}", weekly["id"].as_str().unwrap());
    let done = json!({"done": true});
    let reply = client
        .json(Method::PATCH, &path, Some(&alice), Some(&done))
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let completed = reply.json().unwrap();
    assert_eq!(completed["done"], true);
    let next = completed["next_occurrence_id"].as_str().unwrap().to_owned();
    let next = client
        .json(
            Method::GET,
            &format!("/v1/tasks/{next}"),
            Some(&alice),
            None,
        )
        .await
        .unwrap();
    assert_eq!(next.status, 200);
    let next = next.json().unwrap();
    // A week on, at 9:00 Berlin time, now summer time.
    assert_eq!(next["due_at"], "2027-03-29T07:00:00Z");
    assert_eq!(next["done"], false);
    assert_eq!(next["reminders"], json!([{"before_due": "PT15M"}]));
    assert!(next.get("next_occurrence_id").is_none());
}

/// `(type, id, object)` of every change in `token`'s `/v1/changes`.
async fn changes_of(sys: &System, token: &str) -> Vec<(String, String, Value)> {
    let reply = sys
        .tasks
        .client
        .json(Method::GET, "/v1/changes?limit=100", Some(token), None)
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.json().unwrap()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap().to_owned();
            (text(&c["type"]), text(&c["id"]), c["object"].clone())
        })
        .collect()
}

/// `project.*` and `member.*` changes, as API.md names them, in every
/// member's `/v1/changes` (so SSE, webhooks and the relay, which read the
/// same streams), each showing the project in the reader's own role; a
/// removed member is told of the removal and sees nothing of the project
/// any more; a deleted project leaves its members its deletion; a
/// stranger hears nothing.
async fn project_and_member_changes_reach_each_member_as_api_md_names_them(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, owner, _) = sys.user("alice").await;
    let (_, viewer, _) = sys.user("bob").await;
    let (_, stranger, _) = sys.user("eve").await;
    let created = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&owner),
            json!({"name": "Garden"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
    let one = format!("/v1/projects/{id}");
    let bob = format!("{one}/members/bob");
    let put = Some(json!({"role": "viewer"}));
    assert_eq!(call(&sys, Method::PUT, &bob, &owner, put).await, 200);
    let rename = Some(json!({"name": "Vegetables"}));
    assert_eq!(call(&sys, Method::PATCH, &one, &owner, rename).await, 200);
    let bobs = changes_of(&sys, &viewer).await;
    assert_eq!(call(&sys, Method::DELETE, &bob, &owner, None).await, 204);
    let bobs_removed = changes_of(&sys, &viewer).await;
    let after = Some(json!({"title": "Beans", "project_id": id}));
    assert_eq!(
        call(&sys, Method::POST, "/v1/tasks", &owner, after).await,
        201
    );
    let alices = changes_of(&sys, &owner).await;
    assert_eq!(call(&sys, Method::DELETE, &one, &owner, None).await, 204);

    let kinds = |changes: &[(String, String, Value)]| {
        changes
            .iter()
            .map(|(kind, _, _)| kind.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        kinds(&alices),
        [
            "project.created",
            "member.added",
            "project.updated",
            "member.removed",
            "task.created",
        ]
    );
    // Deleted, it leaves its members its deletion (its tasks go with it).
    let deleted = changes_of(&sys, &owner).await;
    assert_eq!(kinds(&deleted), ["project.deleted"]);
    assert_eq!(kinds(&bobs), ["member.added", "project.updated"]);
    assert_eq!(kinds(&bobs_removed), ["member.removed"]);
    assert_eq!(
        kinds(&changes_of(&sys, &viewer).await),
        ["member.removed"],
        "nothing after his removal"
    );
    assert!(changes_of(&sys, &stranger).await.is_empty());
    // The objects: a project as its reader sees it, a member with the
    // project's id, a tombstone for the deleted project.
    let (_, created_id, created) = &alices[0];
    assert_eq!(
        (created_id, &created["name"], &created["role"]),
        (&id, &json!("Garden"), &json!("owner"))
    );
    let (_, renamed_id, renamed) = &bobs[1];
    assert_eq!(
        (renamed_id, &renamed["name"], &renamed["role"]),
        (&id, &json!("Vegetables"), &json!("viewer"))
    );
    for (_, member_id, member) in [&bobs[0], &bobs_removed[0]] {
        assert_eq!(member_id, &id);
        assert_eq!(
            (&member["project_id"], &member["username"], &member["role"]),
            (&json!(id), &json!("bob"), &json!("viewer"))
        );
        assert!(member["added_at"].is_string(), "{member}");
    }
    let (_, deleted_id, tombstone) = &deleted[0];
    assert_eq!((deleted_id, tombstone), (&id, &Value::Null));
}

/// `GET /v1/export`: the projects the caller owns and every task in them
/// (a member's too), not what others own and share with them; page after
/// page (more than one here), as JSON or as iCalendar.
async fn the_export_holds_what_the_caller_owns_as_json_and_icalendar(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let project = |token: &str, name: &str| {
        let body = json!({ "name": name });
        let token = token.to_owned();
        let sys = &sys;
        async move {
            let made = sys
                .post(&sys.tasks.client, "/v1/projects", Some(&token), body)
                .await;
            assert_eq!(made.status, 201, "{:?}", made.body);
            made.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let garden = project(&alice, "Garden").await;
    let shed = project(&bob, "Shed").await;
    let share = |id: &str, name: &str, owner: &str| {
        let path = format!("/v1/projects/{id}/members/{name}");
        let owner = owner.to_owned();
        let sys = &sys;
        async move {
            let put = Some(json!({"role": "editor"}));
            assert_eq!(call(sys, Method::PUT, &path, &owner, put).await, 200);
        }
    };
    share(&garden, "bob", &alice).await;
    share(&shed, "alice", &bob).await;
    let mut hers = std::collections::HashSet::new();
    for n in 0..104 {
        let made = sys
            .post(
                &sys.tasks.client,
                "/v1/tasks",
                Some(&alice),
                json!({"title": format!("Task {n}"), "recurrence": if n == 0 { json!("FREQ=DAILY") } else { json!(null) }, "due_at": "2031-05-05T09:00:00Z"}),
            )
            .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        hers.insert(made.json().unwrap()["id"].as_str().unwrap().to_owned());
    }
    let in_project = |title: &str, id: &str| json!({"title": title, "project_id": id});
    let bobs_in_garden = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&bob),
            in_project("Rake", &garden),
        )
        .await;
    hers.insert(
        bobs_in_garden.json().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let in_shed = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&alice),
            in_project("Oil", &shed),
        )
        .await;
    assert_eq!(in_shed.status, 201);

    let export = sys
        .tasks
        .client
        .json(Method::GET, "/v1/export", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(export.status, 200);
    assert_eq!(export.headers["content-type"], "application/json");
    let body = export.json().unwrap();
    assert_eq!(body["format"], "todo.export/1");
    let projects: Vec<&str> = body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        projects,
        ["Inbox", "Garden"],
        "hers, not the one shared with her"
    );
    let tasks = body["tasks"].as_array().unwrap();
    let ids: std::collections::HashSet<String> = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tasks.len(), 105, "each once");
    assert_eq!(ids, hers);

    let calendar = sys
        .tasks
        .client
        .json(Method::GET, "/v1/export?format=ics", Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(calendar.status, 200);
    assert!(
        calendar.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/calendar")
    );
    let text = String::from_utf8(calendar.body.to_vec()).unwrap();
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n"), "{}", &text[..40]);
    assert!(text.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(text.matches("BEGIN:VTODO\r\n").count(), 105);
    assert_eq!(text.matches("RRULE:FREQ=DAILY\r\n").count(), 1);

    let bad = call(&sys, Method::GET, "/v1/export?format=xml", &alice, None).await;
    assert_eq!(bad, 400);
    let anonymous = sys
        .tasks
        .client
        .json(Method::GET, "/v1/export", None, None)
        .await
        .unwrap();
    assert_eq!(anonymous.status, 401);
}

/// `POST /v1/import` of a body of `kind`: its status and JSON answer.
pub(crate) async fn import(sys: &System, token: &str, kind: &str, body: Vec<u8>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let reply = sys
        .tasks
        .client
        .send(
            Method::POST,
            "/v1/import",
            &[("authorization", &auth), ("content-type", kind)],
            Some(body),
        )
        .await
        .unwrap();
    (reply.status.as_u16(), reply.json().unwrap_or(Value::Null))
}

/// The titles of the caller's tasks, with their parents' titles.
async fn titles(sys: &System, token: &str) -> Vec<(String, Option<String>)> {
    let reply = sys
        .tasks
        .client
        .json(Method::GET, "/v1/tasks?limit=100", Some(token), None)
        .await
        .unwrap();
    let items = reply.json().unwrap()["items"].as_array().unwrap().clone();
    let title = |id: &Value| {
        items
            .iter()
            .find(|t| &t["id"] == id)
            .map(|t| t["title"].as_str().unwrap().to_owned())
    };
    let mut out: Vec<(String, Option<String>)> = items
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap().to_owned(),
                title(&t["parent_id"]),
            )
        })
        .collect();
    out.sort();
    out
}

/// Alice's export, imported by Bob (JSON) and by Carol (iCalendar): the
/// same tasks, subtasks under their parents, her project made his; a
/// second import makes nothing new; a file with a fault writes nothing and
/// names the fault's line or item.
async fn an_import_makes_an_export_the_callers_once_and_all_or_nothing(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let (_, bob, _) = sys.user("bob").await;
    let (_, carol, _) = sys.user("carol").await;
    let made = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&alice),
            json!({"name": "Garden"}),
        )
        .await;
    let garden = made.json().unwrap()["id"].as_str().unwrap().to_owned();
    let create = |body: Value| {
        let sys = &sys;
        let alice = alice.clone();
        async move {
            let made = sys
                .post(&sys.tasks.client, "/v1/tasks", Some(&alice), body)
                .await;
            assert_eq!(made.status, 201, "{:?}", made.body);
            made.json().unwrap()["id"].as_str().unwrap().to_owned()
        }
    };
    let dig = create(json!({"title": "Dig", "project_id": garden})).await;
    create(json!({"title": "Sow", "parent_id": dig})).await;
    create(
        json!({"title": "Water", "project_id": garden, "due_at": "2031-05-05T09:00:00Z",
        "recurrence": "FREQ=WEEKLY;BYDAY=MO", "time_zone": "Europe/Berlin",
        "reminders": [{"before_due": "PT15M"}]}),
    )
    .await;
    create(json!({"title": "Call; then, write", "labels": ["home"], "priority": 3})).await;
    let theirs = titles(&sys, &alice).await;
    assert_eq!(theirs.len(), 4);

    let export = |format: &str| {
        let sys = &sys;
        let path = format!("/v1/export?format={format}");
        let alice = alice.clone();
        async move {
            let reply = sys
                .tasks
                .client
                .json(Method::GET, &path, Some(&alice), None)
                .await
                .unwrap();
            assert_eq!(reply.status, 200);
            reply.body.to_vec()
        }
    };
    let json_file = export("json").await;
    let (status, counts) = import(&sys, &bob, "application/json", json_file.clone()).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(
        counts,
        json!({"projects_created": 1, "tasks_created": 4, "unchanged": 0})
    );
    assert_eq!(
        titles(&sys, &bob).await,
        theirs,
        "the same tasks, the same tree"
    );
    let his_projects = sys
        .tasks
        .client
        .json(Method::GET, "/v1/projects", Some(&bob), None)
        .await
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = his_projects["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Inbox", "Garden"]);
    let (status, again) = import(&sys, &bob, "application/json", json_file).await;
    assert_eq!(status, 200);
    assert_eq!(
        again,
        json!({"projects_created": 0, "tasks_created": 0, "unchanged": 5})
    );
    assert_eq!(titles(&sys, &bob).await.len(), 4);

    let calendar = export("ics").await;
    let (status, counts) = import(&sys, &carol, "text/calendar", calendar.clone()).await;
    assert_eq!(status, 200, "{counts}");
    assert_eq!(counts["tasks_created"], 4);
    assert_eq!(titles(&sys, &carol).await, theirs);
    let (_, again) = import(
        &sys,
        &carol,
        "text/calendar; charset=utf-8",
        calendar.clone(),
    )
    .await;
    assert_eq!(again["tasks_created"], 0);

    // A fault on the last VTODO: nothing of the file is written.
    let text = String::from_utf8(calendar).unwrap();
    let broken = text.replace("RRULE:FREQ=WEEKLY;BYDAY=MO", "RRULE:FREQ=SECONDLY");
    let line = 1 + broken[..broken.find("RRULE:FREQ=SECONDLY").unwrap()]
        .matches('\n')
        .count();
    let broken = broken.replace("UID:", "UID:new-");
    let (status, problem) = import(&sys, &carol, "text/calendar", broken.into_bytes()).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "file");
    let message = problem["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("line {line}: RRULE: ")),
        "{message}"
    );
    assert_eq!(titles(&sys, &carol).await.len(), 4, "nothing written");
    let (status, problem) = import(
        &sys,
        &carol,
        "application/json",
        br#"{"format":"todo.export/1","tasks":[{"id":"a","title":"fine"},{"id":"b","title":""}]}"#
            .to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("tasks[1]: title: "),
        "{problem}"
    );
    assert_eq!(titles(&sys, &carol).await.len(), 4, "nothing written");
    let (status, _) = import(&sys, &carol, "text/plain", b"hello".to_vec()).await;
    assert_eq!(status, 415);
    // Past 8 MiB: refused as announced, before a byte of it is read.
    let mut big = crate::harness::tls(&sys, sys.tasks.addr).await;
    let head = format!(
        "POST /v1/import HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {carol}\r\nContent-Type: text/calendar\r\nContent-Length: {}\r\n\r\n",
        8 * 1024 * 1024 + 1
    );
    big.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), big.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// `GET` of a feed's URL, with no account: status, content type, body.
async fn read_feed(sys: &System, url: &str) -> (u16, String, String) {
    let reply = sys
        .tasks
        .client
        .send(Method::GET, url, &[], None)
        .await
        .unwrap();
    let kind = reply
        .headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (
        reply.status.as_u16(),
        kind,
        String::from_utf8_lossy(&reply.body).into_owned(),
    )
}

/// A project's feed: its tasks that are not archived (not another
/// project's), to anyone with its URL; published anew, the old URL is
/// dead; revoked, or its project deleted, the URL is not found.
async fn a_projects_feed_is_read_without_an_account_until_it_is_revoked(deployment: Deployment) {
    let Some(sys) = spawn(deployment, Options::default()).await else {
        return;
    };
    let (_, alice, _) = sys.user("alice").await;
    let made = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&alice),
            json!({"name": "Garden"}),
        )
        .await;
    let garden = made.json().unwrap()["id"].as_str().unwrap().to_owned();
    for n in 0..130 {
        let body =
            json!({"title": format!("Garden {n}"), "project_id": garden, "archived": n == 7});
        let made = sys
            .post(&sys.tasks.client, "/v1/tasks", Some(&alice), body)
            .await;
        assert_eq!(made.status, 201);
    }
    let inbox = sys
        .post(
            &sys.tasks.client,
            "/v1/tasks",
            Some(&alice),
            json!({"title": "Private"}),
        )
        .await;
    assert_eq!(inbox.status, 201);
    let path = format!("/v1/projects/{garden}/feed");
    assert_eq!(
        call(&sys, Method::GET, &path, &alice, None).await,
        404,
        "none yet"
    );
    let published = sys
        .tasks
        .client
        .json(Method::POST, &path, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(published.status, 201);
    assert_eq!(published.headers["cache-control"], "no-store");
    let url = published.json().unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        url.starts_with("/v1/feeds/") && url.ends_with(".ics"),
        "{url}"
    );
    let (status, kind, text) = read_feed(&sys, &url).await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/calendar"), "{kind}");
    assert!(text.starts_with("BEGIN:VCALENDAR\r\n") && text.ends_with("END:VCALENDAR\r\n"));
    assert_eq!(
        text.matches("BEGIN:VTODO").count(),
        129,
        "over two pages, the archived one left out"
    );
    assert!(!text.contains("SUMMARY:Garden 7\r\n") && !text.contains("Private"));
    // The same URL without ".ics" is the same feed; a near token is none.
    let bare = url.trim_end_matches(".ics");
    assert_eq!(read_feed(&sys, bare).await.0, 200);
    let mut near = bare.to_owned();
    let last = near.pop().unwrap();
    near.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(read_feed(&sys, &near).await.0, 404);
    assert_eq!(read_feed(&sys, "/v1/feeds/nothing.ics").await.0, 404);
    let seen = sys
        .tasks
        .client
        .json(Method::GET, &path, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(seen.status, 200);
    assert!(
        seen.json().unwrap().get("url").is_none(),
        "the URL is shown once"
    );

    // Published anew: the old URL is dead at once, the new one works.
    let again = sys
        .tasks
        .client
        .json(Method::POST, &path, Some(&alice), None)
        .await
        .unwrap();
    let new_url = again.json().unwrap()["url"].as_str().unwrap().to_owned();
    assert_ne!(new_url, url);
    assert_eq!(read_feed(&sys, &url).await.0, 404);
    assert_eq!(read_feed(&sys, &new_url).await.0, 200);
    // Revoked: not found.
    assert_eq!(call(&sys, Method::DELETE, &path, &alice, None).await, 204);
    assert_eq!(read_feed(&sys, &new_url).await.0, 404);
    assert_eq!(call(&sys, Method::DELETE, &path, &alice, None).await, 404);
    // The project deleted: its feed with it.
    let last = sys
        .tasks
        .client
        .json(Method::POST, &path, Some(&alice), None)
        .await
        .unwrap();
    let last_url = last.json().unwrap()["url"].as_str().unwrap().to_owned();
    assert_eq!(read_feed(&sys, &last_url).await.0, 200);
    let project = format!("/v1/projects/{garden}");
    assert_eq!(
        call(&sys, Method::DELETE, &project, &alice, None).await,
        204
    );
    assert_eq!(read_feed(&sys, &last_url).await.0, 404);

    // A feed is one of its owner's credentials: a password change ends it
    // (one published after works), and so does the account's disabling.
    let (bob_id, bob, _) = sys.user("bob").await;
    let shed = sys
        .post(
            &sys.tasks.client,
            "/v1/projects",
            Some(&bob),
            json!({"name": "Shed"}),
        )
        .await;
    let shed = shed.json().unwrap()["id"].as_str().unwrap().to_owned();
    let shed_feed = format!("/v1/projects/{shed}/feed");
    let publish = |token: String| {
        let sys = &sys;
        let path = shed_feed.clone();
        async move {
            let reply = sys
                .tasks
                .client
                .json(Method::POST, &path, Some(&token), None)
                .await
                .unwrap();
            assert_eq!(reply.status, 201);
            reply.json().unwrap()["url"].as_str().unwrap().to_owned()
        }
    };
    let before = publish(bob.clone()).await;
    assert_eq!(read_feed(&sys, &before).await.0, 200);
    let changed = sys
        .post(
            &sys.auth.client,
            "/v1/users/me/password",
            Some(&bob),
            json!({"current_password": "correct horse", "new_password": "a new horse battery"}),
        )
        .await;
    assert_eq!(changed.status, 204, "{:?}", changed.body);
    assert_eq!(
        read_feed(&sys, &before).await.0,
        404,
        "published before the change"
    );
    let (fresh, _) = sys.login("bob", "a new horse battery").await;
    // What the owner's `GET …/feed` says of it.
    let shown = || async {
        let reply = sys
            .tasks
            .client
            .json(Method::GET, &shed_feed, Some(&fresh), None)
            .await
            .unwrap();
        reply.status
    };
    assert_eq!(shown().await, 404, "its owner sees no feed");
    let after = publish(fresh.clone()).await;
    assert_eq!(read_feed(&sys, &after).await.0, 200, "published after it");
    assert_eq!(shown().await, 200, "published again");
    let (_, admin) = sys.admin().await;
    let disabled = sys
        .auth
        .client
        .json(
            Method::PATCH,
            &format!("/v1/users/{bob_id}"),
            Some(&admin),
            Some(&json!({"disabled": true})),
        )
        .await
        .unwrap();
    assert_eq!(disabled.status, 200);
    assert_eq!(read_feed(&sys, &after).await.0, 404, "its owner disabled");
}
