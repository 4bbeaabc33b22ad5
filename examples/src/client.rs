//! A small typed client for the running servers, over TLS: what another
//! Rust program would write to use todo as a service.

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use todo_testkit::{Client, ClientError, Reply};

/// A task as the API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: String,
    pub done: bool,
    pub completed_at: Option<String>,
    pub due_at: Option<String>,
    pub priority: u8,
    pub labels: Vec<String>,
    pub archived: bool,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
}

/// A page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The writable fields of a new task.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NewTask {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What a call can fail with: no answer, or an answer with a problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Transport(#[from] ClientError),
    #[error("{status}: {problem}")]
    Api { status: u16, problem: Value },
    #[error("unexpected answer: {0}")]
    Decode(#[from] serde_json::Error),
}

/// A logged-in (or not yet) user of the two APIs.
#[derive(Debug, Clone)]
pub struct TodoClient {
    auth: Client,
    tasks: Client,
    access_token: Option<String>,
    refresh_token: Option<String>,
}

fn ok(reply: Reply, expected: u16) -> Result<Reply, Error> {
    if reply.status.as_u16() == expected {
        Ok(reply)
    } else {
        Err(Error::Api {
            status: reply.status.as_u16(),
            problem: reply.json().unwrap_or(Value::Null),
        })
    }
}

impl TodoClient {
    /// `auth` talks to auth-server, `tasks` to task-server (the same client
    /// when both are on one origin).
    #[must_use]
    pub fn new(auth: Client, tasks: Client) -> Self {
        Self {
            auth,
            tasks,
            access_token: None,
            refresh_token: None,
        }
    }

    pub async fn register(&self, username: &str, password: &str) -> Result<Value, Error> {
        let body = json!({"username": username, "password": password});
        let reply = self
            .auth
            .json(Method::POST, "/v1/auth/register", None, Some(&body))
            .await?;
        Ok(ok(reply, 201)?.json()?)
    }

    pub async fn login(&mut self, username: &str, password: &str) -> Result<(), Error> {
        let body = json!({"username": username, "password": password});
        let reply = ok(
            self.auth
                .json(Method::POST, "/v1/auth/login", None, Some(&body))
                .await?,
            200,
        )?;
        self.adopt(&reply.json()?);
        Ok(())
    }

    /// Exchanges the refresh token for a new pair (the old one dies).
    pub async fn refresh(&mut self) -> Result<(), Error> {
        let body = json!({"refresh_token": self.refresh_token});
        let reply = ok(
            self.auth
                .json(Method::POST, "/v1/auth/refresh", None, Some(&body))
                .await?,
            200,
        )?;
        self.adopt(&reply.json()?);
        Ok(())
    }

    pub async fn logout(&mut self) -> Result<(), Error> {
        let body = json!({"refresh_token": self.refresh_token.take()});
        self.access_token = None;
        ok(
            self.auth
                .json(Method::POST, "/v1/auth/logout", None, Some(&body))
                .await?,
            204,
        )?;
        Ok(())
    }

    fn adopt(&mut self, pair: &Value) {
        self.access_token = pair["access_token"].as_str().map(str::to_owned);
        self.refresh_token = pair["refresh_token"].as_str().map(str::to_owned);
    }

    pub async fn create_task(&self, task: &NewTask) -> Result<Task, Error> {
        let body = serde_json::to_value(task)?;
        let reply = self
            .tasks
            .json(
                Method::POST,
                "/v1/tasks",
                self.access_token.as_deref(),
                Some(&body),
            )
            .await?;
        Ok(serde_json::from_slice(&ok(reply, 201)?.body)?)
    }

    /// One page of tasks; `query` is the list query string (`label=home&sort=due`).
    pub async fn list_tasks(&self, query: &str) -> Result<Page<Task>, Error> {
        let path = if query.is_empty() {
            "/v1/tasks".to_owned()
        } else {
            format!("/v1/tasks?{query}")
        };
        let reply = self
            .tasks
            .json(Method::GET, &path, self.access_token.as_deref(), None)
            .await?;
        Ok(serde_json::from_slice(&ok(reply, 200)?.body)?)
    }

    /// Marks a task done, unless it changed since it was read (412).
    pub async fn complete(&self, task: &Task) -> Result<Task, Error> {
        let auth = format!("Bearer {}", self.access_token.as_deref().unwrap_or(""));
        let tag = format!("\"v{}\"", task.version);
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("if-match", tag.as_str()),
        ];
        let path = format!("/v1/tasks/{}", task.id);
        let reply = self
            .tasks
            .send(
                Method::PATCH,
                &path,
                &headers,
                Some(br#"{"done":true}"#.to_vec()),
            )
            .await?;
        Ok(serde_json::from_slice(&ok(reply, 200)?.body)?)
    }

    pub async fn delete_task(&self, task: &Task) -> Result<(), Error> {
        let path = format!("/v1/tasks/{}", task.id);
        ok(
            self.tasks
                .json(Method::DELETE, &path, self.access_token.as_deref(), None)
                .await?,
            204,
        )?;
        Ok(())
    }
}

/// The client example: a user registers, adds tasks, completes one, lists,
/// deletes, and logs out. Returns what it would print.
pub async fn demo(mut client: TodoClient, username: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let user = client.register(username, "correct horse battery").await?;
    out.push(format!(
        "registered {}",
        user["username"].as_str().unwrap_or("?")
    ));
    client.login(username, "correct horse battery").await?;
    let milk = client
        .create_task(&NewTask {
            title: "Buy milk".into(),
            labels: vec!["home".into()],
            ..NewTask::default()
        })
        .await?;
    let report = client
        .create_task(&NewTask {
            title: "Write the report".into(),
            priority: Some(3),
            ..NewTask::default()
        })
        .await?;
    let done = client.complete(&milk).await?;
    out.push(format!(
        "completed '{}' (version {})",
        done.title, done.version
    ));
    client.refresh().await?;
    let open = client.list_tasks("done=false").await?;
    out.push(format!(
        "open tasks: {}",
        open.items
            .iter()
            .map(|t| t.title.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    client.delete_task(&report).await?;
    let all = client.list_tasks("").await?;
    out.push(format!(
        "after deleting the report: {} task(s)",
        all.items.len()
    ));
    client.logout().await?;
    out.push("logged out".to_owned());
    Ok(out)
}
