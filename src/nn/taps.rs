//! Named intermediate tensors, recorded on request for parity checks and debugging.

use std::collections::BTreeMap;

use candle_core::Tensor;

/// A recorder of intermediate tensors. Disabled by default: recording costs nothing then.
#[derive(Debug, Default)]
pub struct Taps {
    map: Option<BTreeMap<String, Tensor>>,
}

impl Taps {
    /// A recorder that records nothing.
    pub fn off() -> Self {
        Self { map: None }
    }

    /// A recorder that keeps every tensor it is given.
    pub fn recording() -> Self {
        Self {
            map: Some(BTreeMap::new()),
        }
    }

    /// Whether tensors are being recorded.
    pub fn enabled(&self) -> bool {
        self.map.is_some()
    }

    /// Records `t` under `name` (cheap: tensors are reference counted).
    pub fn put(&mut self, name: impl Into<String>, t: &Tensor) {
        if let Some(m) = &mut self.map {
            m.insert(name.into(), t.clone());
        }
    }

    /// Looks a recorded tensor up.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.map.as_ref()?.get(name)
    }

    /// The recorded tensors.
    pub fn into_map(self) -> BTreeMap<String, Tensor> {
        self.map.unwrap_or_default()
    }
}
