//! The fixture every test starts from: three mock providers, a generated signing key, the
//! standard gateway config (customisable), and a real Envoy running the shipped config.

use std::collections::BTreeMap;

use tokenward_e2e::client::{self, Reply};
use tokenward_e2e::envoy::{wasm_module, Envoy, EnvoyConfig, EnvoyOptions};
use tokenward_e2e::mock_provider::{MockProvider, Recorded};
use tokenward_e2e::setup::{gateway_config, ProviderSecrets, SigningKey, TokenSpec, PROVIDERS};
use tokenward_filter::config::Config;

pub struct Gateway {
    pub envoy: Envoy,
    pub providers: BTreeMap<String, MockProvider>,
    pub key: SigningKey,
    pub secrets: ProviderSecrets,
}

pub struct Options {
    pub concurrency: u32,
    /// The listener comes from a watched file, so `Gateway::update_config` works.
    pub updatable: bool,
    /// A last change to the Envoy config, after the mock upstreams are in.
    pub patch_envoy: Option<Box<dyn FnOnce(EnvoyConfig) -> EnvoyConfig>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: 1,
            updatable: false,
            patch_envoy: None,
        }
    }
}

impl Gateway {
    pub fn start() -> Gateway {
        Gateway::start_with(Options::default(), |_, _| {})
    }

    /// Starts with the standard config after `customize` had its say.
    pub fn start_with(
        options: Options,
        customize: impl FnOnce(&mut Config, &SigningKey),
    ) -> Gateway {
        let key = SigningKey::generate("k1");
        let secrets = ProviderSecrets::generate();
        let mut config = gateway_config(&[&key], &secrets);
        customize(&mut config, &key);
        let json = serde_json::to_string(&config).unwrap();
        Gateway::start_raw(options, Some(&json), key, secrets)
    }

    /// Starts with a raw filter configuration (`None`: the plugin has none).
    pub fn start_raw(
        options: Options,
        filter_config: Option<&str>,
        key: SigningKey,
        secrets: ProviderSecrets,
    ) -> Gateway {
        let mut providers = BTreeMap::new();
        let mut envoy_config = EnvoyConfig::shipped()
            .unwrap()
            .with_wasm(&wasm_module().unwrap())
            .unwrap();
        if options.updatable {
            envoy_config = envoy_config.with_listener_from_file();
        }
        for (name, _, _) in PROVIDERS {
            let mock = MockProvider::start(name).unwrap();
            envoy_config = envoy_config.with_upstream(name, mock.addr).unwrap();
            providers.insert(name.to_string(), mock);
        }
        envoy_config = match filter_config {
            Some(json) => envoy_config.with_filter_config(json).unwrap(),
            None => envoy_config.without_filter_config().unwrap(),
        };
        if let Some(patch) = options.patch_envoy {
            envoy_config = patch(envoy_config);
        }
        let envoy_options = EnvoyOptions {
            concurrency: options.concurrency,
            ..EnvoyOptions::default()
        };
        let envoy = Envoy::start(envoy_config, &envoy_options).unwrap();
        Gateway {
            envoy,
            providers,
            key,
            secrets,
        }
    }

    /// Gives the running Envoy a new filter configuration (an `updatable` gateway only).
    pub fn update_config(&mut self, config: &Config) {
        let json = serde_json::to_string(config).unwrap();
        self.envoy.update_filter_config(&json).unwrap();
    }

    pub fn token(&self) -> String {
        self.key.mint(&TokenSpec::default())
    }

    pub fn mint(&self, spec: TokenSpec) -> String {
        self.key.mint(&spec)
    }

    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<&str>,
    ) -> Reply {
        client::send(method, &self.envoy.url(path), headers, body).unwrap()
    }

    /// POST a chat completion with a bearer token.
    pub fn chat(&self, token: &str, model: &str) -> Reply {
        let body = format!(
            r#"{{"model":"{model}","messages":[{{"role":"user","content":"Say hello"}}]}}"#
        );
        self.send(
            "POST",
            "/v1/chat/completions",
            &[("authorization", &client::bearer(token))],
            Some(&body),
        )
    }

    pub fn received(&self, provider: &str) -> Vec<Recorded> {
        self.providers[provider].received()
    }

    pub fn all_received(&self) -> Vec<Recorded> {
        self.providers
            .values()
            .flat_map(MockProvider::received)
            .collect()
    }

    /// Asserts that no provider ever saw `secret` in a header or path.
    pub fn assert_never_forwarded(&self, secret: &str) {
        for r in self.all_received() {
            assert!(
                !r.contains(secret),
                "a client credential reached a provider: {} {}",
                r.method,
                r.path
            );
        }
    }

    /// Asserts Envoy's log holds no panic and no credential.
    pub fn assert_log_clean(&self, secrets: &[&str]) {
        let log = self.envoy.log();
        assert!(!log.contains("panicked"), "the Wasm VM panicked:\n{log}");
        for secret in secrets {
            assert!(!log.contains(secret), "a credential appears in Envoy's log");
        }
    }
}
