//! Black-box tests of the HTTP service: each spawns the app on port 0 with a fresh data
//! directory and talks to it over HTTP.

mod auth;
mod batch;
mod detect;
mod drift;
mod health;
mod helpers;
mod jobs;
mod limits;
mod models;
mod scale_out;
mod seed_client;
