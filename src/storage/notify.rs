//! Small single-threaded wake-up primitives used by the storage engine.
//!
//! Owns: [`Completion`] (a one-shot result many tasks can await) and
//! [`Signal`] (a level-triggered wake-up for one task). Shard-local (`Rc`,
//! not `Send`); no I/O; never blocks.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A one-shot outcome (`Ok` or an error message) that many can await.
#[derive(Clone, Default)]
pub(crate) struct Completion {
    inner: Rc<RefCell<CompletionState>>,
}

#[derive(Default)]
struct CompletionState {
    outcome: Option<Result<(), String>>,
    wakers: Vec<Waker>,
}

impl Completion {
    pub fn complete(&self, outcome: Result<(), String>) {
        let wakers = {
            let mut state = self.inner.borrow_mut();
            assert!(state.outcome.is_none(), "completed twice");
            state.outcome = Some(outcome);
            std::mem::take(&mut state.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    pub fn outcome(&self) -> Option<Result<(), String>> {
        self.inner.borrow().outcome.clone()
    }

    pub fn wait(&self) -> CompletionFuture {
        CompletionFuture {
            completion: self.clone(),
        }
    }
}

pub(crate) struct CompletionFuture {
    completion: Completion,
}

impl Future for CompletionFuture {
    type Output = Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.completion.inner.borrow_mut();
        match &state.outcome {
            Some(outcome) => Poll::Ready(outcome.clone()),
            None => {
                state.wakers.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A level-triggered wake-up: `notify` sets it, `wait` resolves once it is
/// set and clears it.
#[derive(Clone, Default)]
pub(crate) struct Signal {
    inner: Rc<RefCell<(bool, Option<Waker>)>>,
}

impl Signal {
    pub fn notify(&self) {
        let waker = {
            let mut state = self.inner.borrow_mut();
            state.0 = true;
            state.1.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    pub fn wait(&self) -> SignalFuture {
        SignalFuture {
            signal: self.clone(),
        }
    }
}

pub(crate) struct SignalFuture {
    signal: Signal,
}

impl Future for SignalFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.signal.inner.borrow_mut();
        if state.0 {
            state.0 = false;
            return Poll::Ready(());
        }
        state.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}
