//! Black-box tests of the HTTP service: each spawns the app on port 0 with a fresh data
//! directory and talks to it over HTTP.

mod auth;
mod batch;
mod detect;
mod drift;
mod encryption;
mod hardening;
mod health;
mod helpers;
mod jobs;
mod keep_alive;
mod lifecycle;
mod limits;
mod models;
mod openapi;
mod outage;
mod privacy;
mod scale_out;
mod security;
mod seed_client;
mod tls;
