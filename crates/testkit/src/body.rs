//! A response body fed from a channel, so a spawned task can stream SSE frames on its own timetable.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;

pub(crate) type FrameResult = Result<Frame<Bytes>, std::io::Error>;

pub(crate) struct ChannelBody {
    pub rx: mpsc::Receiver<FrameResult>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        self.rx.poll_recv(cx)
    }
}
