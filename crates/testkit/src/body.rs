//! A response body fed from a channel, so a spawned task can stream SSE frames on its own timetable.
//! Token frames are stamped when hyper takes them for writing, the closest the server can get to "on the wire".

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

pub(crate) type FrameResult = Result<Frame<Bytes>, std::io::Error>;

/// One frame from the producer; `token` marks a chunk that carries generated tokens.
pub(crate) struct Outgoing {
    pub frame: FrameResult,
    pub token: bool,
}

pub(crate) struct ChannelBody {
    pub rx: mpsc::Receiver<Outgoing>,
    /// Where token hand-over times go; `None` when truth is not recorded.
    pub stamps: Option<Arc<Mutex<Vec<Instant>>>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        self.rx.poll_recv(cx).map(|next| {
            next.map(|out| {
                if out.token
                    && let Some(stamps) = &self.stamps
                {
                    stamps.lock().expect("stamp lock").push(Instant::now());
                }
                out.frame
            })
        })
    }
}
