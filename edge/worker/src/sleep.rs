//! The clock port's `sleep` on the runtime's `setTimeout`.
//!
//! workers-rs' `Delay` keeps the waker of its first poll only. The `fetch` export polls a
//! request once with a waker that does nothing ([`crate::fetch_handler`]), and a future must
//! wake the waker of its latest poll: a `Delay` created in that first poll would never wake its
//! request (a single-flight wait would hang, an outbound timeout would never fire). This timer
//! wakes the latest one, and clears itself when dropped before it fires.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use wasm_bindgen::prelude::Closure;
use wasm_bindgen::JsCast;
use worker::js_sys;

#[derive(Default)]
struct Shared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

pub struct Sleep {
    ms: i32,
    shared: Rc<Shared>,
    /// The callback (kept alive while the timer runs) and the timer's id.
    timer: Option<(Closure<dyn FnMut()>, i32)>,
}

impl Sleep {
    pub fn new(duration: Duration) -> Self {
        Sleep {
            ms: i32::try_from(duration.as_millis()).unwrap_or(i32::MAX),
            shared: Rc::default(),
            timer: None,
        }
    }
}

fn scope() -> web_sys::WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.shared.fired.get() {
            return Poll::Ready(());
        }
        *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
        if self.timer.is_none() {
            let shared = self.shared.clone();
            let callback = Closure::<dyn FnMut()>::new(move || {
                shared.fired.set(true);
                if let Some(w) = shared.waker.borrow_mut().take() {
                    w.wake();
                }
            });
            let set = scope().set_timeout_with_callback_and_timeout_and_arguments_0(
                callback.as_ref().unchecked_ref(),
                self.ms,
            );
            match set {
                Ok(id) => self.timer = Some((callback, id)),
                // No timer to wait for: waiting would never end.
                Err(_) => return Poll::Ready(()),
            }
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((_, id)) = &self.timer {
            if !self.shared.fired.get() {
                scope().clear_timeout_with_handle(*id);
            }
        }
    }
}
