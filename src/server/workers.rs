//! Worker threads: one single-threaded tokio runtime per worker, each accepting on its own
//! `SO_REUSEPORT` socket of every listener, so a connection, its requests and its upstream
//! connections stay on one thread from accept to close.
//!
//! Why not one multi-threaded runtime: on the proxy's hot path a work-stealing scheduler
//! pays for atomics, queue hand-offs and cross-thread wake-ups on every request, and an
//! upstream connection opened by one thread is then driven by another. Measured on the
//! benchmark (bench/README.md), the per-core layout costs less CPU per request.
//!
//! The worker index itself lives in [`crate::worker`], a leaf the proxy reads.
//!
//! Everything outside the request path (admin listener, reloads, health checks, JWKS
//! refreshes, signals) runs on the runtime that started the gateway.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Running worker threads. [`Workers::stop`] ends them; dropping without it detaches them.
pub struct Workers {
    running: Vec<Worker>,
}

struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

impl Workers {
    /// Starts `n` worker threads, each with its own current-thread runtime. Waits (briefly,
    /// blocking) until each runtime is built.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut running = Vec::with_capacity(n);
        for i in 0..n {
            let (stop, stop_rx) = oneshot::channel::<()>();
            let (stopped_tx, stopped) = oneshot::channel::<()>();
            let (built_tx, built) = std::sync::mpsc::channel();
            // The runtime is built on its own thread: it must never be dropped on the
            // caller's, which runs inside another runtime.
            std::thread::Builder::new()
                .name(format!("gateway-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = built_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = built_tx.send(Ok(rt.handle().clone()));
                    crate::worker::enter(i);
                    rt.block_on(async {
                        // The purge is process-wide: one worker's nudge does for all.
                        if i == 0 {
                            tokio::select! {
                                _ = stop_rx => {}
                                () = nudge_allocator() => {}
                            }
                        } else {
                            let _ = stop_rx.await;
                        }
                    });
                    // Connections were drained before the stop; anything left is dropped.
                    rt.shutdown_timeout(Duration::from_secs(1));
                    let _ = stopped_tx.send(());
                })?;
            let handle = built
                .recv()
                .map_err(|_| std::io::Error::other("a worker thread ended while starting"))??;
            running.push(Worker {
                handle,
                stop,
                stopped,
            });
        }
        Ok(Workers { running })
    }

    /// The workers' runtimes, in worker order.
    pub fn handles(&self) -> impl Iterator<Item = &Handle> {
        self.running.iter().map(|w| &w.handle)
    }

    /// Stops every worker (tasks still running on them are dropped) and waits for them.
    pub async fn stop(self) {
        let mut waits = Vec::with_capacity(self.running.len());
        for w in self.running {
            let _ = w.stop.send(());
            waits.push(w.stopped);
        }
        for w in waits {
            let _ = w.await;
        }
    }
}

/// How often the allocator is let return freed memory; see [`nudge_allocator`].
const NUDGE_EVERY: Duration = Duration::from_secs(2);

/// Lets the allocator give freed memory back to the system while the process is quiet.
///
/// mimalloc returns freed pages to the system (its "purge") a delay after they were freed,
/// but only from inside its own calls that free a whole page. A quiet process makes none, so
/// what it freed last (the buffers of the connections it just parked or closed) would stay
/// resident until traffic resumes. A block above mimalloc's largest size class is a page of
/// its own: allocating and freeing one every [`NUDGE_EVERY`] runs the purge of everything,
/// in every arena, whose delay has passed. Only the page's header is written, and purged
/// again. (`mi_collect` would say it directly, but calling it needs `unsafe`, which this
/// crate forbids; `MIMALLOC_PURGE_DELAY=0` purges at every free and cost 10 to 45 % of
/// req/s in the benchmark.)
async fn nudge_allocator() {
    let mut tick = tokio::time::interval(NUDGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut block = Vec::<u8>::new();
        // try_: a refused reservation (a tight address-space limit) is no reason to abort.
        // black_box: the compiler may otherwise remove an allocation nothing reads.
        if block.try_reserve_exact(NUDGE_BYTES).is_ok() {
            drop(std::hint::black_box(block));
        }
    }
}

/// Above mimalloc's largest size class (512 KiB), so it is served and freed as its own page.
const NUDGE_BYTES: usize = 1 << 20;

/// Binds `n` listening sockets to `addr` that share its port through `SO_REUSEPORT` (the
/// kernel spreads new connections over them). Port 0 picks one free port for all of them.
/// An address another process listens on is refused, as a plain bind would: the port is
/// first bound alone, without `SO_REUSEPORT`, then released and bound by the group.
/// Elsewhere than Linux, where `SO_REUSEPORT` does not spread connections, the workers share
/// one socket.
pub fn bind_shared(addr: SocketAddr, n: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if n <= 1 || cfg!(not(target_os = "linux")) {
        let one = bind_one(addr, false)?;
        return (0..n.max(1)).map(|_| one.try_clone()).collect();
    }
    let bind_to = bind_one(addr, false)?.local_addr()?;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n {
        sockets.push(bind_one(bind_to, true)?);
    }
    Ok(sockets)
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // As tokio's own bind does: a restart does not wait for TIME_WAIT to clear.
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_in_use_is_refused_and_the_group_shares_one_port() {
        let group = bind_shared("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let addr = group[0].local_addr().unwrap();
        assert!(group.iter().all(|s| s.local_addr().unwrap() == addr));
        // A second gateway on the same address fails as with a plain bind.
        for n in [1, 3] {
            let e = bind_shared(addr, n).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{n} workers");
        }
    }
}
