//! The origin for load tests: the same handlers as [`crate::origin`], served
//! by one glommio executor per thread with SO_REUSEPORT listeners, so it is
//! not the bottleneck of a benchmark. It records nothing and speaks plain
//! HTTP only (the blocking origin covers TLS and request recording).

use std::net::SocketAddr;
use std::rc::Rc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use crate::origin::{encode, Handler, RequestParser};

async fn connection(mut stream: TcpStream, handler: Rc<Handler>, id: u64) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut parser = RequestParser::default();
    loop {
        let req = loop {
            match parser.poll(&mut buf, id) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(_) => return,
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let (bytes, close_after, upgrade) = encode((handler)(&req), req.method == "HEAD");
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
        if upgrade != crate::origin::AfterUpgrade::Nothing {
            // Echo what was read ahead, then everything else.
            // Nothing is recorded here: what frames carried is dropped.
            let (mut pending, mut received) = (Vec::new(), Vec::new());
            let (out, mut more) =
                crate::origin::upgraded_echo(upgrade, &mut pending, &buf, &mut received);
            if stream.write_all(&out).await.is_err() {
                return;
            }
            while more {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        received.clear();
                        let (out, keep) = crate::origin::upgraded_echo(
                            upgrade,
                            &mut pending,
                            &chunk[..n],
                            &mut received,
                        );
                        more = keep;
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            }
            return;
        }
        if close || close_after {
            return;
        }
    }
}

/// Serves `handler` on `listen` with `threads` executors until the process
/// ends. With port 0 only one thread is used (each SO_REUSEPORT listener
/// would get its own port). `on_ready` gets the bound address.
pub fn serve(
    listen: SocketAddr,
    handler: Handler,
    threads: usize,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let threads = if listen.port() == 0 {
        1
    } else {
        threads.max(1)
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let mut handles = Vec::new();
    for t in 0..threads {
        let handler = handler.clone();
        let tx = tx.clone();
        let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name(&format!("origin{t}"))
            .io_memory(512 * 1024)
            .spawn(move || async move {
                let listener = match TcpListener::bind(listen) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(format!("{listen}: {e}")));
                        return;
                    }
                };
                let _ = tx.send(listener.local_addr().map_err(|e| e.to_string()));
                let handler = Rc::new(handler);
                let mut id = 0u64;
                loop {
                    match listener.accept().await {
                        Ok(stream) => {
                            id += 1;
                            glommio::spawn_local(connection(stream, handler.clone(), id)).detach();
                        }
                        Err(_) => glommio::timer::sleep(std::time::Duration::from_millis(10)).await,
                    }
                }
            })
            .map_err(|e| format!("cannot start origin thread: {e}"))?;
        handles.push(handle);
    }
    drop(tx);
    let mut bound = None;
    for _ in 0..threads {
        match rx.recv() {
            Ok(Ok(addr)) => bound = Some(addr),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("an origin thread stopped".into()),
        }
    }
    if let Some(addr) = bound {
        on_ready(addr);
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}
