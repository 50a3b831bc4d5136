//! One cancellation signal shared by every task of a run (Ctrl-C, or a sweep point ending), cheap to clone and
//! to wait on.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone)]
pub struct Cancel {
    rx: watch::Receiver<bool>,
    /// Holds the sender of a signal that never fires, so waiting on it stays pending.
    _never: Option<Arc<watch::Sender<bool>>>,
}

/// The side that fires a `Cancel`.
pub struct CancelHandle {
    tx: watch::Sender<bool>,
}

impl Cancel {
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(false);
        (CancelHandle { tx }, Cancel { rx, _never: None })
    }

    /// A signal that never fires.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(false);
        Cancel {
            rx,
            _never: Some(Arc::new(tx)),
        }
    }

    /// A signal that fires when this one does or at `deadline`, whichever comes first: a budget on top of
    /// Ctrl-C. Needs a Tokio runtime.
    pub fn or_at(&self, deadline: std::time::Instant) -> Cancel {
        let (handle, cancel) = Cancel::new();
        let outer = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = outer.cancelled() => handle.cancel(),
                () = tokio::time::sleep_until(deadline.into()) => handle.cancel(),
                // Nobody listens any more: the run ended before either.
                () = handle.tx.closed() => {}
            }
        });
        cancel
    }

    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        // An error means the handle is gone without firing: then it never will.
        if rx.wait_for(|c| *c).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl CancelHandle {
    pub fn cancel(&self) {
        let _ = self.tx.send(true);
    }
}
