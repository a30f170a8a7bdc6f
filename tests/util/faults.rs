//! A fault-injecting HTTP proxy for the resilience tests: a
//! [`super::front::Front`] with one [`FaultLayer`] in front of an upstream
//! URL (an osmem-server).
//!
//! [`FaultProxy::start`] relays every request, except those a [`Rule`]
//! picks: a rule names the requests it applies to ([`Route`]), which of
//! them it hits ([`When`]) and what happens to them ([`Fault`]); see
//! [`super::front::plan`]. Every request is logged with the fault applied
//! to it ([`Event`]), and the layer's counters and log
//! ([`FaultLayer::assert_fired`], [`FaultLayer::requests_matching`], ...)
//! are reached through the proxy. `accept-encoding` is not relayed, so
//! upstream answers are plain JSON the layer can rewrite.

use std::ops::Deref;
use std::sync::Arc;

pub use super::front::faults::FaultLayer;
pub use super::front::plan::{Fault, Route, Rule, When};
use super::front::{Front, Upstream};

/// A running fault-injecting proxy, stopped on drop. Derefs to its
/// [`FaultLayer`] for the plan, the counters and the log.
pub struct FaultProxy {
    front: Front,
    layer: Arc<FaultLayer>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (a base URL
    /// without credentials, e.g. [`super::server::TestCluster::base_url`])
    /// with the fault plan `rules` (the first rule that hits a request
    /// applies; every matching rule counts it).
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let layer = Arc::new(FaultLayer::new(upstream, rules));
        let front = Front::start(Some(Upstream::new(upstream, None)), vec![layer.clone()]);
        FaultProxy { front, layer }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.front.url()
    }
}

impl Deref for FaultProxy {
    type Target = FaultLayer;

    fn deref(&self) -> &FaultLayer {
        &self.layer
    }
}
