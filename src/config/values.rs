//! The broker's values: what was set explicitly (file, `--set`, flags,
//! runtime overrides) over the defaults from the table, and what a topic key
//! inherits from its broker synonym down a unit ladder.
//!
//! Must not: parse files or flags (`cli.rs`) or build typed configs
//! (`broker.rs`, `topic.rs`); every value stored here has passed
//! `validate`.

use std::collections::BTreeMap;

use super::cluster::default_controller_listen;
use super::definitions::{definition, ladder, DefaultValue, Scope, DEFINITIONS};
use super::validate::{unknown_key_message, validate};
use super::{ConfigError, ConfigSource, SHARDS_MAX};

#[derive(Clone, Debug)]
pub(super) struct Setting {
    pub(super) value: String,
    pub(super) origin: String,
    /// Set at runtime (AlterConfigs), not by a file or flag.
    pub(super) dynamic: bool,
}

impl Setting {
    fn source(&self) -> ConfigSource {
        if self.dynamic {
            ConfigSource::DynamicBrokerConfig
        } else {
            ConfigSource::StaticBrokerConfig
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct Values {
    pub(super) explicit: BTreeMap<&'static str, Setting>,
    pub(super) defaults: BTreeMap<&'static str, Option<String>>,
}

impl Values {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        match self.explicit.get(name) {
            Some(setting) => Some(&setting.value),
            None => self.defaults.get(name)?.as_deref(),
        }
    }

    /// Our own invariant: every key read here has a value that passed its
    /// validator (explicit values on the way in, defaults by a unit test).
    pub(super) fn text(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("broker config '{name}' has no value"))
    }

    pub(super) fn integer(&self, name: &str) -> i64 {
        let text = self.text(name);
        text.parse()
            .unwrap_or_else(|_| panic!("broker config '{name}' = {text:?} is not an integer"))
    }

    pub(super) fn unsigned(&self, name: &str) -> u64 {
        u64::try_from(self.integer(name)).expect("validator allows no negative value here")
    }

    pub(super) fn boolean(&self, name: &str) -> bool {
        self.text(name) == "true"
    }

    /// Where an explicitly set key was set; empty for a default.
    pub(super) fn origin_of(&self, name: &str) -> &str {
        self.explicit
            .get(name)
            .map_or("", |setting| setting.origin.as_str())
    }

    pub(super) fn source(&self, name: &str) -> ConfigSource {
        self.explicit
            .get(name)
            .map_or(ConfigSource::DefaultConfig, Setting::source)
    }

    /// Set a broker key; `replace` false makes a second setting an error
    /// (the same key twice in one file).
    pub(super) fn set(
        &mut self,
        name: &str,
        value: &str,
        origin: &str,
        replace: bool,
    ) -> Result<(), ConfigError> {
        let Some(def) = definition(Scope::Broker, name) else {
            let message = unknown_key_message(name, Scope::Broker);
            return Err(ConfigError::invalid(name, origin, message));
        };
        let value =
            validate(def, value).map_err(|message| ConfigError::invalid(name, origin, message))?;
        if !replace && self.explicit.contains_key(def.name) {
            return Err(ConfigError::invalid(name, origin, "set twice"));
        }
        let origin = origin.to_string();
        let dynamic = false;
        self.explicit.insert(
            def.name,
            Setting {
                value,
                origin,
                dynamic,
            },
        );
        Ok(())
    }

    /// Fill `defaults` for every broker key, after all explicit settings.
    pub(super) fn resolve_defaults(&mut self, cores: usize) {
        for def in DEFINITIONS.iter().filter(|def| def.scope == Scope::Broker) {
            let value = match def.default {
                DefaultValue::Value(text) => Some(text.to_string()),
                DefaultValue::Null | DefaultValue::Inherited => None,
                DefaultValue::Cores => Some(cores.clamp(1, SHARDS_MAX as usize).to_string()),
                DefaultValue::ListenAddress => self.get("listen").map(str::to_string),
                DefaultValue::OwnVoterAddress => default_controller_listen(self),
            };
            self.defaults.insert(def.name, value);
        }
    }

    /// Kafka's synonym list for a broker key: down its unit ladder, the
    /// explicit value then the default of each rung that has one.
    pub(super) fn synonyms(
        &self,
        broker_key: &'static str,
    ) -> Vec<(String, Option<String>, ConfigSource)> {
        let mut synonyms = Vec::new();
        for (name, _) in ladder(broker_key) {
            if let Some(setting) = self.explicit.get(name) {
                let value = Some(setting.value.clone());
                synonyms.push((name.to_string(), value, setting.source()));
            }
            if let Some(Some(default)) = self.defaults.get(name) {
                let value = Some(default.clone());
                synonyms.push((name.to_string(), value, ConfigSource::DefaultConfig));
            }
        }
        synonyms
    }

    /// The effective value of a topic key's broker synonym in the topic
    /// key's units, its source, and Kafka's synonym list for it.
    pub(super) fn inherited(&self, broker_key: &'static str) -> Inherited {
        let rungs = ladder(broker_key);
        let synonyms = self.synonyms(broker_key);
        let explicit_rung = rungs
            .iter()
            .find(|(name, _)| self.explicit.contains_key(name));
        let default_rung = rungs
            .iter()
            .find(|(name, _)| matches!(self.defaults.get(name), Some(Some(_))));
        let (source, rung) = match (explicit_rung, default_rung) {
            (Some(rung), _) => (self.source(rung.0), rung),
            (None, Some(rung)) => (ConfigSource::DefaultConfig, rung),
            (None, None) => panic!("broker config '{broker_key}' has no value on any rung"),
        };
        let (name, factor) = *rung;
        let value = if factor == 1 {
            self.text(name).to_string()
        } else {
            to_milliseconds(self.integer(name), factor).to_string()
        };
        Inherited {
            value,
            source,
            synonyms,
        }
    }
}

pub(super) struct Inherited {
    pub(super) value: String,
    pub(super) source: ConfigSource,
    pub(super) synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

/// Kafka: a negative retention in any unit means "forever", which is -1 ms.
fn to_milliseconds(amount: i64, factor: i64) -> i64 {
    if amount < 0 {
        -1
    } else {
        amount.saturating_mul(factor)
    }
}
