//! Whose fault an error is, for any error latefill's crates return.

use std::error::Error as StdError;

use latefill_core::ErrorClass;
use latefill_core::storage::StoreFailure;

/// The class of `err`: of the first error of a latefill crate among it and its
/// causes; a store failure the user can fix ([`StoreFailure`]: a missing bucket,
/// credentials, an endpoint) is [`ErrorClass::Usage`] wherever it sits. `None` when no
/// cause is latefill's (an I/O error of the caller's own, say).
///
/// The one place that knows every crate's error type: a command line maps the class
/// to its exit code, a binding to its exception.
pub fn class_of(err: &(dyn StdError + 'static)) -> Option<ErrorClass> {
    if StoreFailure::of(err).is_some() {
        return Some(ErrorClass::Usage);
    }
    let mut cause = Some(err);
    while let Some(e) = cause {
        let class = if let Some(e) = e.downcast_ref::<crate::engine::Error>() {
            Some(e.class())
        } else if let Some(e) = e.downcast_ref::<latefill_executor::Error>() {
            Some(e.class())
        } else if let Some(e) = e.downcast_ref::<latefill_state::Error>() {
            Some(e.class())
        } else if let Some(e) = e.downcast_ref::<latefill_detector::Error>() {
            Some(e.class())
        } else if let Some(e) = e.downcast_ref::<latefill_datagen::Error>() {
            Some(e.class())
        } else if e.is::<latefill_core::InvalidPeriod>() {
            Some(ErrorClass::Usage)
        } else {
            None
        };
        if class.is_some() {
            return class;
        }
        cause = e.source();
    }
    None
}
