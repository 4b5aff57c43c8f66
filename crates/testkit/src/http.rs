//! JSON calls to a pynomaly HTTP service with a bearer key.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::wait::wait;

/// A client of one service: its base URL (`http://host:port`) and the credential it
/// sends (an API key or a token; none for an anonymous caller).
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    key: Option<String>,
}

/// An answer: status, headers, and the body as JSON (`Value::String` of the text when it
/// is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Api {
    /// A client of `base` sending `key`, with a 60 s timeout per request.
    ///
    /// # Panics
    /// No HTTP client can be built.
    pub fn new(base: impl Into<String>, key: impl Into<String>) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        Api::with_client(client, base).key(key)
    }

    /// An anonymous client of `base` on `client` (its timeouts, its connections).
    pub fn with_client(client: reqwest::Client, base: impl Into<String>) -> Api {
        Api {
            client,
            base: base.into(),
            key: None,
        }
    }

    /// The same client sending `key` instead.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Api {
        Api {
            key: Some(key.into()),
            ..self.clone()
        }
    }

    /// The same client and key, for the instance at `base`.
    #[must_use]
    pub fn at(&self, base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            ..self.clone()
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The underlying HTTP client, for requests this type does not make.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A call `METHOD base+path` with the key; add a body or headers, then send it.
    pub fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            api: self,
            method,
            path: path.to_string(),
            body: None,
            headers: Vec::new(),
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path).send().await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call(Method::POST, path).json(body).send().await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path).send().await
    }

    /// Polls the job `id` until it has ended (succeeded, failed or cancelled); its final
    /// JSON.
    ///
    /// # Panics
    /// A poll is not answered 200, or the job is still going after `timeout`.
    pub async fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        wait(&format!("job {id} ends"), timeout)
            .until(async || {
                let job = self.get(&format!("/api/v1/jobs/{id}")).await;
                let job = job.assert_status(200);
                if matches!(
                    job["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                ) {
                    Ok(job.clone())
                } else {
                    Err(job.to_string())
                }
            })
            .await
    }
}

/// One call being put together by [`Api::call`].
#[derive(Debug)]
#[must_use = "a call does nothing until sent"]
pub struct Call<'a> {
    api: &'a Api,
    method: Method,
    path: String,
    body: Option<Value>,
    headers: Vec<(String, String)>,
}

impl Call<'_> {
    /// Sends `body` as JSON.
    pub fn json(mut self, body: &Value) -> Self {
        self.body = Some(body.clone());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sends the call; `Err` only when no answer came (refused, reset, timed out).
    pub async fn try_send(self) -> Result<Reply, reqwest::Error> {
        let api = self.api;
        let mut req = api
            .client
            .request(self.method, format!("{}{}", api.base, self.path));
        if let Some(key) = &api.key {
            req = req.bearer_auth(key);
        }
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        if let Some(b) = &self.body {
            req = req.json(b);
        }
        Reply::read(req.send().await?).await
    }

    /// Sends the call to a server that must answer.
    ///
    /// # Panics
    /// No answer came.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}{}", self.method, self.api.base, self.path);
        self.try_send()
            .await
            .unwrap_or_else(|e| panic!("{what}: no answer: {e}"))
    }
}

impl Reply {
    /// Reads a response whole; `Err` when its body does not arrive.
    pub async fn read(resp: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Asserts this status, and returns the body.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }

    /// Asserts the service's error shape (`{"error": {"code", "message"}, "request_id"}`)
    /// with this status and code, and returns the `error` object.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(
            self.body["error"]["message"].is_string(),
            "body: {}",
            self.body
        );
        assert!(self.body["request_id"].is_string(), "body: {}", self.body);
        &self.body["error"]
    }

    /// The error message ("" when there is none).
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
