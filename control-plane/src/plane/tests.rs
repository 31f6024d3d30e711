use tokenward_filter::config::{LimitConfig, LimitScope, Metric, ModelSource, ProviderStyle};
use tokenward_filter::error::ErrorCode;
use tokenward_filter::window::Window;

use super::*;
use crate::store::SqliteStore;

const NOW: u64 = 1_800_000_000;

fn init(plane: &ControlPlane<SqliteStore>) {
    plane
        .init(
            &InitSettings {
                issuer: "https://cp.test".into(),
                audiences: vec!["gateway".into()],
                alg: Alg::EdDSA,
            },
            NOW,
        )
        .unwrap();
}

fn plane() -> ControlPlane<SqliteStore> {
    let plane = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    init(&plane);
    plane
        .put_provider(openai(), ProviderSecret::Env("OPENAI_API_KEY".into()), NOW)
        .unwrap();
    plane.put_route(chat_route(), NOW).unwrap();
    plane
}

fn openai() -> ProviderConfig {
    crate::testing::openai_provider()
}

fn chat_route() -> RouteConfig {
    tokenward_filter::testing::chat_route("chat", "/v1/chat/completions", "openai")
}

fn alice() -> TokenRequest {
    TokenRequest {
        subject: "alice".into(),
        tenant: Some("acme".into()),
        scopes: vec!["chat".into()],
        models: Some(vec!["gpt-4o*".into()]),
        ..TokenRequest::default()
    }
}

/// What the filter says of `credential` with the configuration rendered at `now`.
fn filter_verdict(
    plane: &ControlPlane<SqliteStore>,
    credential: &str,
    now: u64,
) -> Result<String, ErrorCode> {
    let config = plane.render(now).unwrap();
    let json = serde_json::to_vec(&config).unwrap();
    let policy = Policy::from_json(&json, &|name| Some(format!("{name}-value"))).unwrap();
    policy
        .authenticate(credential, now)
        .map(|identity| identity.subject().to_string())
        .map_err(|refusal| refusal.code)
}

#[test]
fn a_minted_token_passes_the_filter_with_the_rendered_configuration() {
    let plane = plane();
    let minted = plane.mint_token(&alice(), NOW).unwrap();
    assert_eq!(
        filter_verdict(&plane, &minted.token, NOW + 1),
        Ok("alice".into())
    );
    assert_eq!(minted.expires_at, NOW + DEFAULT_MAX_TOKEN_TTL);
    assert_eq!(
        filter_verdict(&plane, &minted.token, NOW + DEFAULT_MAX_TOKEN_TTL + 60),
        Err(ErrorCode::TokenExpired)
    );
}

#[test]
fn lifetimes_are_bounded() {
    let plane = plane();
    let too_long = TokenRequest {
        ttl_seconds: Some(DEFAULT_MAX_TOKEN_TTL + 1),
        ..alice()
    };
    assert!(matches!(
        plane.mint_token(&too_long, NOW),
        Err(PlaneError::Invalid(_))
    ));
    let bad_subject = TokenRequest {
        subject: "two words".into(),
        ..alice()
    };
    assert!(matches!(
        plane.mint_token(&bad_subject, NOW),
        Err(PlaneError::Invalid(_))
    ));
    let unknown_plan = TokenRequest {
        plan: Some("gold".into()),
        ..alice()
    };
    assert!(matches!(
        plane.mint_token(&unknown_plan, NOW),
        Err(PlaneError::Invalid(m)) if m.contains("gold")
    ));
}

#[test]
fn revocation_by_jti_subject_and_tenant_reaches_the_filter() {
    let plane = plane();
    let first = plane.mint_token(&alice(), NOW).unwrap();
    let second = plane.mint_token(&alice(), NOW).unwrap();
    let bob = plane
        .mint_token(
            &TokenRequest {
                subject: "bob".into(),
                tenant: Some("other".into()),
                ..alice()
            },
            NOW,
        )
        .unwrap();
    plane
        .revoke(
            &Revocation::Jti {
                jti: first.jti.clone(),
                expires_at: None,
            },
            NOW,
        )
        .unwrap();
    assert_eq!(
        filter_verdict(&plane, &first.token, NOW),
        Err(ErrorCode::TokenRevoked)
    );
    assert_eq!(
        filter_verdict(&plane, &second.token, NOW),
        Ok("alice".into())
    );
    assert_eq!(
        plane
            .revoke(&Revocation::Tenant("acme".into()), NOW)
            .unwrap(),
        2
    );
    assert_eq!(
        filter_verdict(&plane, &second.token, NOW),
        Err(ErrorCode::TokenRevoked)
    );
    assert_eq!(filter_verdict(&plane, &bob.token, NOW), Ok("bob".into()));
    plane
        .revoke(&Revocation::Subject("bob".into()), NOW)
        .unwrap();
    assert_eq!(
        filter_verdict(&plane, &bob.token, NOW),
        Err(ErrorCode::TokenRevoked)
    );
    // Pruned once the token would have expired anyway.
    let later = plane
        .render(first.expires_at + DEFAULT_CLOCK_SKEW + 1)
        .unwrap();
    assert!(later.revocations.jtis.is_empty());
    assert_eq!(later.revocations.subjects, ["bob"]);
}

#[test]
fn rotation_publishes_first_signs_later_and_keeps_the_old_key_until_its_tokens_expire() {
    let plane = plane();
    let old_token = plane.mint_token(&alice(), NOW).unwrap();
    let new_key = plane.rotate_key(Alg::ES256, Some(600), NOW + 10).unwrap();
    let published = plane.jwks(NOW + 10).unwrap();
    assert_eq!(published.keys.len(), 2, "announced before it signs");
    let during = plane.mint_token(&alice(), NOW + 20).unwrap();
    assert_eq!(
        during.kid, old_token.kid,
        "the old key signs until the overlap ends"
    );
    let after = plane.mint_token(&alice(), NOW + 610).unwrap();
    assert_eq!(after.kid, new_key.kid);
    assert_eq!(
        filter_verdict(&plane, &after.token, NOW + 611),
        Ok("alice".into()),
        "ES256 verifies"
    );
    assert_eq!(
        filter_verdict(&plane, &during.token, NOW + 611),
        Ok("alice".into()),
        "the retired key's tokens pass until they expire"
    );
    // The retired key leaves once every token it signed has expired.
    let gone = NOW + 610 + DEFAULT_MAX_TOKEN_TTL + DEFAULT_CLOCK_SKEW;
    assert_eq!(plane.jwks(gone).unwrap().keys.len(), 1);
    let states: Vec<KeyState> = plane
        .key_states(gone)
        .unwrap()
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(states, [KeyState::Removed, KeyState::Active]);
}

#[test]
fn api_keys_are_shown_once_stored_as_hashes_and_revocable() {
    let plane = plane();
    let created = plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "ci".into(),
                tenant: Some("platform".into()),
                scopes: vec!["chat".into()],
                models: vec!["gpt-4o-mini".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    assert!(tokenward_filter::apikey::checksum_is_valid(&created.key));
    assert_eq!(filter_verdict(&plane, &created.key, NOW), Ok("ci".into()));
    let stored = plane.store().api_keys().unwrap();
    assert!(
        !format!("{stored:?}").contains(&created.key),
        "only the hash is kept"
    );
    plane
        .revoke(&Revocation::ApiKey(created.id.clone()), NOW)
        .unwrap();
    assert_eq!(
        filter_verdict(&plane, &created.key, NOW),
        Err(ErrorCode::InvalidApiKey)
    );
    assert!(matches!(
        plane.revoke(&Revocation::ApiKey("key-nope".into()), NOW),
        Err(PlaneError::NotFound(_))
    ));
    let log = format!("{:?}", plane.store().audit_log(100).unwrap());
    assert!(!log.contains(&created.key), "no secret in the audit log");
}

#[test]
fn the_version_is_the_content_and_changes_with_it() {
    let plane = plane();
    let a = plane.render(NOW).unwrap().version;
    assert_eq!(
        plane.render(NOW).unwrap().version,
        a,
        "same state, same version"
    );
    plane
        .revoke(&Revocation::Subject("mallory".into()), NOW)
        .unwrap();
    assert_ne!(plane.render(NOW).unwrap().version, a);
}

#[test]
fn a_change_the_filter_would_refuse_is_not_stored() {
    let plane = plane();
    let orphan = RouteConfig {
        name: "orphan".into(),
        provider: Some("nobody".into()),
        ..chat_route()
    };
    assert!(matches!(
        plane.put_route(orphan, NOW),
        Err(PlaneError::Rejected(_))
    ));
    assert_eq!(plane.store().routes().unwrap().len(), 1);
    let bad_plan = PlanConfig {
        limits: vec![LimitConfig {
            name: "usd".into(),
            metric: Metric::CostMicroUsd,
            window: Window::Month,
            limit: 10,
            per: LimitScope::Subject,
        }],
        shadow: false,
        clamp_max_tokens: false,
        default_output_tokens: 10,
        unreachable: Default::default(),
        rate_limit_headers: Default::default(),
        spike: None,
    };
    assert!(
        matches!(
            plane.put_plan("p", bad_plan.clone(), NOW),
            Err(PlaneError::Rejected(_))
        ),
        "cost needs prices"
    );
    plane
        .put_price(
            PriceConfig {
                model: "*".into(),
                input: 1,
                output: 1,
                cached_input: None,
            },
            NOW,
        )
        .unwrap();
    plane.put_plan("p", bad_plan, NOW).unwrap();
    plane.set_default_plan(Some("p"), NOW).unwrap();
    assert_eq!(
        plane.render(NOW).unwrap().default_plan.as_deref(),
        Some("p")
    );
    assert!(plane.set_default_plan(Some("gold"), NOW).is_err());
}

#[test]
fn a_sealed_provider_credential_is_rendered_inline_and_stored_sealed() {
    let plane = plane();
    let credential = format!("provider-credential-{}", crypto::random_hex(12).unwrap());
    let anthropic = ProviderConfig {
        name: "anthropic".into(),
        style: ProviderStyle::Anthropic,
        cluster: "anthropic".into(),
        authority: "api.anthropic.com".into(),
        credential: CredentialSource::Env(String::new()),
        headers: Default::default(),
    };
    plane
        .put_provider(anthropic, ProviderSecret::Sealed(credential.clone()), NOW)
        .unwrap();
    let stored = plane.store().providers().unwrap();
    assert!(!format!("{stored:?}").contains(&credential));
    let rendered = plane.render(NOW).unwrap();
    let provider = rendered
        .providers
        .iter()
        .find(|p| p.name == "anthropic")
        .unwrap();
    assert_eq!(
        provider.credential,
        CredentialSource::Inline(credential.clone())
    );
    let openai = rendered
        .providers
        .iter()
        .find(|p| p.name == "openai")
        .unwrap();
    assert_eq!(
        openai.credential,
        CredentialSource::Env("OPENAI_API_KEY".into())
    );
    // Another master key opens nothing.
    let stolen: ControlPlane<SqliteStore> = ControlPlane::new(
        plane.shared_store(),
        MasterKey::generate().unwrap(),
        "thief",
    );
    assert!(matches!(stolen.render(NOW), Err(PlaneError::Crypto(_))));
    assert!(matches!(
        stolen.mint_token(&alice(), NOW),
        Err(PlaneError::Crypto(_))
    ));
}

#[test]
fn init_happens_once() {
    let plane = plane();
    let again = plane.init(
        &InitSettings {
            issuer: "x".into(),
            audiences: vec!["y".into()],
            alg: Alg::EdDSA,
        },
        NOW,
    );
    assert!(matches!(again, Err(PlaneError::AlreadyInitialised)));
    let fresh = ControlPlane::new(
        SqliteStore::in_memory().unwrap(),
        MasterKey::generate().unwrap(),
        "t",
    );
    assert!(matches!(
        fresh.mint_token(&alice(), NOW),
        Err(PlaneError::NotInitialised)
    ));
}

#[test]
fn a_revoked_signing_key_is_unpublished_and_its_tokens_refused() {
    let plane = plane();
    let old = plane.mint_token(&alice(), NOW).unwrap();
    let new_key = plane.rotate_key(Alg::EdDSA, Some(0), NOW + 1).unwrap();
    plane
        .revoke(&Revocation::Key(old.kid.clone()), NOW + 2)
        .unwrap();
    assert_eq!(
        filter_verdict(&plane, &old.token, NOW + 3),
        Err(ErrorCode::InvalidToken),
        "its key is gone"
    );
    let config = plane.render(NOW + 3).unwrap();
    assert_eq!(config.revocations.key_ids, std::slice::from_ref(&old.kid));
    assert_eq!(config.keys.keys.len(), 1);
    let fresh = plane.mint_token(&alice(), NOW + 3).unwrap();
    assert_eq!(fresh.kid, new_key.kid);
    assert!(matches!(
        plane.revoke(&Revocation::Key("nope".into()), NOW),
        Err(PlaneError::NotFound(_))
    ));
}

#[test]
fn a_revocation_outlives_the_token_by_the_clock_skew() {
    let plane = plane();
    let token = plane
        .mint_token(
            &TokenRequest {
                ttl_seconds: Some(60),
                ..alice()
            },
            NOW,
        )
        .unwrap();
    plane
        .revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: Some(NOW + 1),
            },
            NOW,
        )
        .unwrap();
    // The filter accepts the token until exp + skew; the revocation must stay as long.
    let within_skew = token.expires_at + DEFAULT_CLOCK_SKEW - 1;
    assert_eq!(
        filter_verdict(&plane, &token.token, within_skew),
        Err(ErrorCode::TokenRevoked)
    );
    assert!(plane
        .render(token.expires_at + DEFAULT_CLOCK_SKEW + 1)
        .unwrap()
        .revocations
        .jtis
        .is_empty());
}

#[test]
fn two_providers_may_not_share_a_cluster() {
    let plane = plane();
    let twin = ProviderConfig {
        name: "twin".into(),
        authority: "evil.example".into(),
        ..openai()
    };
    assert!(matches!(
        plane.put_provider(twin, ProviderSecret::Env("X".into()), NOW),
        Err(PlaneError::Invalid(m)) if m.contains("another provider")
    ));
}

#[test]
fn raising_the_token_lifetime_keeps_retired_keys_published_longer() {
    let plane = plane();
    let old = plane.mint_token(&alice(), NOW).unwrap();
    plane.rotate_key(Alg::EdDSA, Some(0), NOW + 1).unwrap();
    plane
        .set_setting("max_token_ttl_seconds", 7200, NOW + 2)
        .unwrap();
    let later = NOW + 1 + DEFAULT_MAX_TOKEN_TTL + DEFAULT_CLOCK_SKEW + 10;
    let kids: Vec<_> = plane
        .jwks(later)
        .unwrap()
        .keys
        .into_iter()
        .filter_map(|k| k.kid)
        .collect();
    assert!(
        kids.contains(&old.kid),
        "published as long as tokens may now live"
    );
}

/// The rendered configuration, compiled as the filter compiles it.
fn filter_accepts(plane: &ControlPlane<SqliteStore>) -> Config {
    let config = plane.render(NOW).unwrap();
    Policy::compile(&config, &|name| Some(format!("{name}-value"))).unwrap();
    config
}

fn cost_plan() -> PlanConfig {
    PlanConfig {
        limits: vec![LimitConfig {
            name: "usd".into(),
            metric: Metric::CostMicroUsd,
            window: Window::Month,
            limit: 10,
            per: LimitScope::Subject,
        }],
        shadow: false,
        clamp_max_tokens: false,
        default_output_tokens: 10,
        unreachable: Default::default(),
        rate_limit_headers: Default::default(),
        spike: None,
    }
}

fn price(model: &str) -> PriceConfig {
    PriceConfig {
        model: model.into(),
        input: 1,
        output: 1,
        cached_input: None,
    }
}

fn audited(plane: &ControlPlane<SqliteStore>) -> Vec<(String, String, String)> {
    plane
        .store()
        .audit_log(100)
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.target, e.detail))
        .collect()
}

#[test]
fn a_provider_a_route_uses_is_removed_only_when_forced_and_then_with_its_routes() {
    let plane = plane();
    let anthropic = ProviderConfig {
        name: "anthropic".into(),
        style: ProviderStyle::Anthropic,
        cluster: "anthropic".into(),
        authority: "api.anthropic.com".into(),
        ..openai()
    };
    plane
        .put_provider(
            anthropic,
            ProviderSecret::Env("ANTHROPIC_API_KEY".into()),
            NOW,
        )
        .unwrap();
    let by_model = RouteConfig {
        name: "gemini-style".into(),
        path_prefix: "/v1beta/models/".into(),
        model_source: ModelSource::GeminiPath,
        provider: None,
        model_providers: vec![tokenward_filter::config::ModelProvider {
            pattern: "gpt*".into(),
            provider: "openai".into(),
        }],
        ..chat_route()
    };
    plane.put_route(by_model, NOW).unwrap();
    let before = plane.render(NOW).unwrap().version;

    let refused = plane.remove_provider("openai", false, NOW).unwrap_err();
    let PlaneError::InUse(message) = &refused else {
        panic!("{refused:?}")
    };
    assert!(
        message.contains(r#"routes "chat", "gemini-style""#) && message.contains("--force"),
        "{message}"
    );
    assert_eq!(
        plane.render(NOW).unwrap().version,
        before,
        "nothing changed"
    );

    let removed = plane.remove_provider("openai", true, NOW).unwrap();
    assert_eq!(removed.routes, ["chat", "gemini-style"]);
    let config = filter_accepts(&plane);
    assert_eq!(
        config
            .providers
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["anthropic"]
    );
    assert!(config.routes.is_empty());
    let log = audited(&plane);
    assert!(log.contains(&(
        "provider.remove".into(),
        "openai".into(),
        r#"forced: with routes "chat", "gemini-style""#.into()
    )));
    assert!(log.contains(&(
        "route.remove".into(),
        "chat".into(),
        "with provider openai".into()
    )));

    // A provider nothing uses goes without force; one that is not there is not found.
    plane.remove_provider("anthropic", false, NOW).unwrap();
    assert!(filter_accepts(&plane).providers.is_empty());
    assert!(matches!(
        plane.remove_provider("anthropic", false, NOW),
        Err(PlaneError::NotFound(_))
    ));
}

#[test]
fn a_plan_is_never_removed_as_the_default_and_forced_past_api_keys_revokes_them() {
    let plane = plane();
    plane.put_price(price("*"), NOW).unwrap();
    plane.put_plan("gold", cost_plan(), NOW).unwrap();
    plane.set_default_plan(Some("gold"), NOW).unwrap();
    for force in [false, true] {
        let error = plane.remove_plan("gold", force, NOW).unwrap_err();
        assert!(
            matches!(&error, PlaneError::InUse(m) if m.contains("default plan")),
            "{error:?}"
        );
    }
    plane.set_default_plan(None, NOW).unwrap();
    let key = plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "svc".into(),
                plan: Some("gold".into()),
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let error = plane.remove_plan("gold", false, NOW).unwrap_err();
    assert!(
        matches!(&error, PlaneError::InUse(m) if m.contains(&format!("API key {:?}", key.id))),
        "{error:?}"
    );
    assert_eq!(filter_verdict(&plane, &key.key, NOW), Ok("svc".into()));

    let removed = plane.remove_plan("gold", true, NOW).unwrap();
    assert_eq!(removed.revoked_api_keys, std::slice::from_ref(&key.id));
    let config = filter_accepts(&plane);
    assert!(config.plans.is_empty());
    assert_eq!(
        filter_verdict(&plane, &key.key, NOW),
        Err(ErrorCode::InvalidApiKey),
        "the key went with its plan"
    );
    assert!(audited(&plane).contains(&(
        "revoke.apikey".into(),
        key.id.clone(),
        "0 exchanged tokens".into()
    )));
    assert!(matches!(
        plane.remove_plan("gold", true, NOW),
        Err(PlaneError::NotFound(_))
    ));
}

#[test]
fn routes_and_prices_are_removed_and_the_last_price_stays_while_a_plan_counts_cost() {
    let plane = plane();
    let before = plane.render(NOW).unwrap().version;
    plane.remove_route("chat", NOW).unwrap();
    let config = filter_accepts(&plane);
    assert!(config.routes.is_empty());
    assert_ne!(config.version, before, "a removal is a new version to push");
    assert!(matches!(
        plane.remove_route("chat", NOW),
        Err(PlaneError::NotFound(_))
    ));

    plane.put_price(price("gpt-4o*"), NOW).unwrap();
    plane.put_price(price("claude*"), NOW).unwrap();
    plane.put_plan("metered", cost_plan(), NOW).unwrap();
    plane.remove_price("gpt-4o*", NOW).unwrap();
    let error = plane.remove_price("claude*", NOW).unwrap_err();
    assert!(
        matches!(&error, PlaneError::InUse(m) if m.contains(r#"plan "metered" count"#)),
        "{error:?}"
    );
    plane.remove_plan("metered", false, NOW).unwrap();
    plane.remove_price("claude*", NOW).unwrap();
    assert!(filter_accepts(&plane).prices.is_empty());
    let log = audited(&plane);
    for action in ["route.remove", "price.remove", "plan.remove"] {
        assert!(log.iter().any(|(a, _, _)| a == action), "{action}: {log:?}");
    }
}

#[test]
fn the_kept_policy_follows_every_commit_of_another_connection_at_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tokenward.db");
    let master = MasterKey::generate().unwrap().to_hex();
    let open = |actor: &str| -> ControlPlane<SqliteStore> {
        ControlPlane::new(
            SqliteStore::open(&db).unwrap(),
            MasterKey::from_hex(&master).unwrap(),
            actor,
        )
    };
    let server = open("server");
    init(&server);
    let token = server.mint_token(&alice(), NOW).unwrap();
    let revision = server.store().revision().unwrap();
    for _ in 0..3 {
        assert_eq!(
            server.authenticate(&token.token, NOW).unwrap().subject(),
            "alice"
        );
    }
    assert_eq!(
        server.store().revision().unwrap(),
        revision,
        "authenticating changes nothing"
    );
    // Another process (the CLI) revokes: the server's next call sees it.
    open("cli")
        .revoke(
            &Revocation::Jti {
                jti: token.jti.clone(),
                expires_at: None,
            },
            NOW,
        )
        .unwrap();
    assert!(server.store().revision().unwrap() > revision);
    let refused = server
        .authenticate(&token.token, NOW)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(&refused, AuthError::Refused(r) if r.code == ErrorCode::TokenRevoked),
        "{refused:?}"
    );
    // A key revoked by another process: every token it signed is out at the next call.
    let other = server
        .mint_token(
            &TokenRequest {
                subject: "bob".into(),
                ..alice()
            },
            NOW,
        )
        .unwrap();
    assert!(server.authenticate(&other.token, NOW).is_ok());
    let kid = server.keys().unwrap()[0].kid.clone();
    open("cli").revoke(&Revocation::Key(kid), NOW).unwrap();
    assert!(server.authenticate(&other.token, NOW).is_err());
}

#[test]
fn a_rotation_that_fails_to_revoke_the_old_key_leaves_no_new_key_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let plane = ControlPlane::new(
        SqliteStore::open(&path).unwrap(),
        MasterKey::generate().unwrap(),
        "test",
    );
    init(&plane);
    let old = plane
        .create_api_key(
            &ApiKeyRequest {
                subject: "app".into(),
                scopes: vec!["chat".into()],
                ..ApiKeyRequest::default()
            },
            NOW,
        )
        .unwrap();
    let before = plane.store().api_keys().unwrap();
    // The old key's revocation, the second step, fails.
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER no_revocation BEFORE UPDATE OF revoked_at ON api_keys
             BEGIN SELECT RAISE(ABORT, 'injected'); END;",
        )
        .unwrap();
    assert!(plane.rotate_api_key(&old.id, NOW + 1).is_err());
    assert_eq!(
        plane.store().api_keys().unwrap(),
        before,
        "no second key in force beside the old one"
    );
}
