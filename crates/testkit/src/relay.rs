//! A TCP relay on a loopback port to a server the test started, standing for that server
//! on the network, which the test can cut (its port closed and every open connection
//! dropped, as a crashed or partitioned server looks to its clients) and open again.

use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::wait::wait;

/// A relay from `127.0.0.1:port` to `127.0.0.1:target`.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    target: u16,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    /// Listens on `port` (a free one: [`crate::free_port`]) and relays to `target`.
    pub async fn open(port: u16, target: u16) -> Relay {
        let mut relay = Relay {
            port,
            target,
            task: None,
        };
        relay.reopen().await;
        relay
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Listens again (the port is free again once cut).
    ///
    /// # Panics
    /// The port cannot be bound again within 10 s.
    pub async fn reopen(&mut self) {
        let listener = wait("the relay's port binds again", Duration::from_secs(10))
            .every(Duration::from_millis(50))
            .until(async || {
                TcpListener::bind(("127.0.0.1", self.port))
                    .await
                    .map_err(|e| e.to_string())
            })
            .await;
        let target = self.target;
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every connection is closed when the relay is cut.
            let mut conns = JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        }));
    }

    /// Closes the port and drops every open connection.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}
