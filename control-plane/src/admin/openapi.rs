//! The admin API's OpenAPI 3.1 document: every operation with its parameters, the schema of
//! its request body — derived with schemars from the very types the handlers parse, so the
//! two cannot drift — and every status it answers, errors in the one `ApiError` shape.
//! `tests/e2e/openapi.rs` runs a schema-driven fuzzer (schemathesis) against it.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};
use tokenward_filter::config::{PlanConfig, PriceConfig, RouteConfig};

use super::catalog::ProviderBody;
use super::credentials::{ApiKeyBody, MintBody, RevokeBody, RotateBody};
use super::oauth::TokenForm;
use crate::plane::{SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE};

/// The OpenAPI 3.1 description of this API.
pub fn openapi_document() -> Value {
    let mut schemas = Schemas::new();
    let read = SCOPE_ADMIN_READ;
    let write = SCOPE_ADMIN_WRITE;
    let whose = |op: Operation, what: &str| {
        op.query(
            "subject",
            json!({"type": "string"}),
            &format!("only the {what} of this subject"),
        )
        .query(
            "tenant",
            json!({"type": "string"}),
            &format!("only the {what} of this tenant"),
        )
    };
    let force = |op: Operation, what: &str| {
        op.query(
            "force",
            json!({"type": "boolean", "default": false}),
            &format!("remove what depends on it too ({what})"),
        )
    };
    let mut paths = Paths::default();
    paths.add(
        "/.well-known/jwks.json",
        "get",
        Operation::public("The public signing keys")
            .answers(200, "a JWK set", json!({"type": "object", "required": ["keys"], "properties": {"keys": {"type": "array", "items": {"type": "object"}}}})),
    );
    paths.add(
        "/oauth/token",
        "post",
        Operation::public("OAuth 2.0 client credentials grant: an API key (the client secret, in the form or HTTP Basic) for a short-lived JWT")
            .form_body(schemas.of::<TokenForm>())
            .answers(200, "the token (`Cache-Control: no-store`)", json!({"type": "object", "required": ["access_token", "token_type", "expires_in"],
                "properties": {"access_token": {"type": "string"}, "token_type": {"const": "Bearer"}, "expires_in": {"type": "integer", "minimum": 0}}}))
            .oauth_error(400, "invalid_request, unsupported_grant_type or invalid_scope (RFC 6749 §5.2)")
            .oauth_error(401, "invalid_client: the client secret is not a valid API key")
            .oauth_error(500, "server_error: no token could be issued"),
    );
    paths.add(
        "/admin/v1/openapi.json",
        "get",
        Operation::public("This document").answers(200, "OpenAPI 3.1", json!({"type": "object"})),
    );
    paths.add(
        "/admin/v1/keys",
        "get",
        Operation::secured("Signing keys and their states", read).answers(
            200,
            "the keys",
            array_of_objects(),
        ),
    );
    paths.add(
        "/admin/v1/keys/rotate",
        "post",
        Operation::secured(
            "New signing key: published now, signing after the overlap",
            write,
        )
        .optional_body(schemas.of::<RotateBody>())
        .answers(
            200,
            "the new key's id and when it signs",
            json!({"type": "object", "required": ["kid", "activate_at"]}),
        ),
    );
    paths.add(
        "/admin/v1/tokens",
        "post",
        Operation::secured("Mint a JWT", write)
            .body(schemas.of::<MintBody>())
            .answers(
                200,
                "the token, shown once",
                json!({"type": "object", "required": ["token", "jti", "kid", "expires_at"]}),
            )
            .fails(409, "conflict: no signing key is active"),
    );
    paths.add(
        "/admin/v1/tokens",
        "get",
        whose(
            Operation::secured("Minted tokens still accepted, newest first", read),
            "tokens",
        )
        .answers(200, "the tokens", array_of_objects()),
    );
    paths.add(
        "/admin/v1/tokens/{jti}",
        "get",
        Operation::secured("One minted token", read)
            .path("jti", "the token's id")
            .answers(200, "the token", json!({"type": "object"}))
            .fails(404, "not_found: no token with this id was minted here"),
    );
    paths.add(
        "/admin/v1/apikeys",
        "post",
        Operation::secured("Create an API key", write)
            .body(schemas.of::<ApiKeyBody>())
            .answers(
                201,
                "the key, shown once, and its id",
                json!({"type": "object", "required": ["id", "key"]}),
            ),
    );
    paths.add(
        "/admin/v1/apikeys",
        "get",
        whose(
            Operation::secured("API keys with their status, never a key or its hash", read),
            "API keys",
        )
        .answers(200, "the API keys", array_of_objects()),
    );
    paths.add(
        "/admin/v1/apikeys/{id}",
        "get",
        Operation::secured("One API key, never the key or its hash", read)
            .path("id", "the API key's id")
            .answers(200, "the API key", json!({"type": "object"}))
            .fails(404, "not_found: no API key has this id"),
    );
    paths.add(
        "/admin/v1/revocations",
        "post",
        Operation::secured("Revoke a JWT (jti), a subject, a tenant, a signing key (kid) or an API key (api_key): name exactly one", write)
            .body(schemas.of::<RevokeBody>())
            .answers(200, "how many credentials the revocation reached", json!({"type": "object", "required": ["revoked"]}))
            .fails(404, "not_found: no signing key or API key has this id")
            .fails(409, "in_use: it would revoke the last API key with admin:write"),
    );
    paths.add(
        "/admin/v1/revocations",
        "get",
        Operation::secured(
            "What is revoked: jtis (and until when), subjects, signing keys",
            read,
        )
        .answers(
            200,
            "the revocations",
            json!({"type": "object", "required": ["jtis", "subjects", "key_ids"]}),
        ),
    );
    paths.add(
        "/admin/v1/revocations/subjects/{subject}",
        "delete",
        Operation::secured(
            "Lift a subject's revocation, or its suspension after a spend spike (API keys revoked with the subject through POST /admin/v1/revocations stay revoked)",
            write,
        )
        .path("subject", "the subject")
        .answers(
            200,
            "lifted",
            json!({"type": "object", "required": ["unrevoked"]}),
        )
        .fails(404, "not_found: the subject is not revoked"),
    );
    paths.add(
        "/admin/v1/providers",
        "get",
        Operation::secured("Providers, each with status available, unavailable (with reason and the Envoys reporting it) or unknown", read)
            .answers(200, "the providers", array_of_objects()),
    );
    paths.add(
        "/admin/v1/providers/{name}",
        "get",
        Operation::secured("One provider with its status", read)
            .path("name", "the provider's name")
            .answers(200, "the provider", json!({"type": "object"}))
            .fails(404, "not_found: no provider has this name"),
    );
    paths.add(
        "/admin/v1/providers/{name}",
        "put",
        Operation::secured("Add or replace a provider; answers its entry, with a warning when no Envoy can load it", write)
            .path("name", "the provider's name")
            .body(schemas.of::<ProviderBody>())
            .answers(200, "the provider's entry", json!({"type": "object"})),
    );
    paths.add(
        "/admin/v1/providers/{name}",
        "delete",
        force(
            Operation::secured("Remove a provider", write).path("name", "the provider's name"),
            "the routes that use it",
        )
        .answers(200, "what was removed", json!({"type": "object"}))
        .fails(404, "not_found: no provider has this name")
        .fails(409, "in_use: routes use it (without force)"),
    );
    paths.add(
        "/admin/v1/routes",
        "get",
        Operation::secured("Every route, in the order they match", read).answers(
            200,
            "the routes",
            array_of_objects(),
        ),
    );
    paths.add(
        "/admin/v1/routes/{name}",
        "get",
        Operation::secured("One route", read)
            .path("name", "the route's name")
            .answers(200, "the route", json!({"type": "object"}))
            .fails(404, "not_found: no route has this name"),
    );
    paths.add(
        "/admin/v1/routes/{name}",
        "put",
        Operation::secured(
            "Add or replace a route (a new one matches last); the path names it",
            write,
        )
        .path("name", "the route's name")
        .body(route_body_schema(schemas.of::<RouteConfig>(), &mut schemas))
        .answers(204, "saved", Value::Null),
    );
    paths.add(
        "/admin/v1/routes/{name}",
        "delete",
        Operation::secured("Remove a route", write)
            .path("name", "the route's name")
            .answers(200, "what was removed", json!({"type": "object"}))
            .fails(404, "not_found: no route has this name"),
    );
    paths.add(
        "/admin/v1/plans",
        "get",
        Operation::secured("Every plan and the default one", read).answers(
            200,
            "the plans by name, and the default plan",
            json!({"type": "object", "required": ["plans", "default_plan"]}),
        ),
    );
    paths.add(
        "/admin/v1/plans/{name}",
        "get",
        Operation::secured("One plan", read)
            .path_as("name", "the plan's name", plan_name())
            .answers(200, "the plan", json!({"type": "object"}))
            .fails(404, "not_found: no plan has this name"),
    );
    paths.add(
        "/admin/v1/plans/{name}",
        "put",
        Operation::secured("Add or replace a quota plan", write)
            .path_as("name", "the plan's name", plan_name())
            .body(schemas.of::<PlanConfig>())
            .answers(204, "saved", Value::Null),
    );
    paths.add(
        "/admin/v1/plans/{name}",
        "delete",
        force(
            Operation::secured("Remove a quota plan (never the default one)", write).path_as(
                "name",
                "the plan's name",
                plan_name(),
            ),
            "the API keys that name it, revoked",
        )
        .answers(200, "what was removed", json!({"type": "object"}))
        .fails(404, "not_found: no plan has this name")
        .fails(
            409,
            "in_use: the default plan, or API keys name it (without force)",
        ),
    );
    paths.add(
        "/admin/v1/prices",
        "get",
        Operation::secured("Every model price (micro-USD per million tokens)", read).answers(
            200,
            "the prices, in the order they match",
            array_of_objects(),
        ),
    );
    paths.add(
        "/admin/v1/prices",
        "put",
        Operation::secured(
            "Add or replace a model price (micro-USD per million tokens)",
            write,
        )
        .body(schemas.of::<PriceConfig>())
        .answers(204, "saved", Value::Null),
    );
    paths.add(
        "/admin/v1/prices/{model}",
        "get",
        Operation::secured("One model price", read)
            .path("model", "the model pattern, percent-encoded")
            .answers(200, "the price", json!({"type": "object"}))
            .fails(404, "not_found: no price has this model pattern"),
    );
    paths.add(
        "/admin/v1/prices/{model}",
        "delete",
        Operation::secured("Remove a model price", write)
            .path("model", "the model pattern, percent-encoded")
            .answers(200, "what was removed", json!({"type": "object"}))
            .fails(404, "not_found: no price has this model pattern")
            .fails(409, "in_use: the last price while a plan counts cost"),
    );
    paths.add(
        "/admin/v1/config",
        "get",
        Operation::secured(
            "The rendered filter configuration (credentials redacted)",
            read,
        )
        .answers(200, "the filter's configuration", json!({"type": "object"})),
    );
    paths.add(
        "/admin/v1/audit",
        "get",
        Operation::secured("The newest audit entries, newest first", read)
            .query(
                "limit",
                json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 100}),
                "how many (more than 10000 reads as 10000)",
            )
            .answers(200, "the entries", array_of_objects()),
    );
    paths.add(
        "/admin/v1/usage",
        "get",
        Operation::secured("The usage ledger: what the filters reported over the sync channel, per hour, subject, tenant, plan, credential, provider and model; or summed per value of one dimension (`by`)", read)
            .query("since", json!({"type": "integer", "minimum": 0, "maximum": u64::MAX}), "from this time (Unix seconds; the hour it falls in counts); the last 24 hours when absent")
            .query("subject", json!({"type": "string"}), "only this subject's usage")
            .query("tenant", json!({"type": "string"}), "only this tenant's usage")
            .query("credential", json!({"type": "string"}), "only this API key's (id) or token's (jti) usage")
            .query("model", json!({"type": "string"}), "only this model's usage")
            .query("provider", json!({"type": "string"}), "only this provider's usage")
            .query("by", json!({"enum": ["subject", "tenant", "credential", "model", "provider"]}), "sum over the hours per value of this dimension (largest cost first)")
            .answers(200, "rows (`hour` and the key with its counts) or, with `by`, totals (`by`, `value` and the counts)", array_of_objects()),
    );
    paths.add(
        "/admin/v1/quota",
        "get",
        Operation::secured("Remaining quota in the windows in force, summed over every Envoy that reports over the sync channel (fleet-wide limits): a subject's, a tenant's, or every counter's (fullest first) when neither is named", read)
            .query("subject", json!({"type": "string"}), "the subject's counters (and those of its tenant limits when it has no tenant)")
            .query("tenant", json!({"type": "string"}), "the tenant's counters")
            .answers(200, "one entry per limit counter: plan, limit, metric, window, per, id, limit_value, used, remaining, resets_at, proxies", array_of_objects()),
    );
    paths.add(
        "/admin/v1/proxies",
        "get",
        Operation::secured("Connected Envoys: versions ACKed or NACKed (with the error), last seen, and the configuration parts each reports it could not load", read)
            .answers(200, "each Envoy by node id", json!({"type": "object"})),
    );
    let mut components = schemas.finish();
    components.insert("ApiError".into(), api_error_schema());
    components.insert("OAuthError".into(), oauth_error_schema());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tokenward control plane",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Signing keys, tokens, API keys, revocations, providers, routes, plans and prices. Every error is JSON: `{\"error\":{\"message\",\"type\",\"param\",\"code\"}}` (the token endpoint: RFC 6749 §5.2). Authentication comes before the body is read: a call without a valid credential learns 401, whatever its body."
        },
        "components": {
            "securitySchemes": {"tokenward": {"type": "http", "scheme": "bearer", "description": "A tokenward JWT or API key with admin:read or admin:write (write implies read)"}},
            "schemas": components
        },
        "paths": paths.0
    })
}

/// The request body schemas, gathered under `#/components/schemas`.
struct Schemas {
    generator: SchemaGenerator,
}

impl Schemas {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        });
        Schemas {
            generator: settings.into_generator(),
        }
    }

    /// A reference to `T`'s schema (or the schema itself, for a type without a name).
    fn of<T: JsonSchema>(&mut self) -> Value {
        let mut schema = self.generator.subschema_for::<T>().to_value();
        bound_integers(&mut schema);
        schema
    }

    fn finish(mut self) -> Map<String, Value> {
        let mut definitions = self.generator.take_definitions(true);
        for schema in definitions.values_mut() {
            bound_integers(schema);
        }
        definitions
    }
}

/// schemars leaves `uint64` open above: the schema says where serde stops reading one.
fn bound_integers(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let unsigned = map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f == "uint64" || f == "uint");
            if unsigned && !map.contains_key("maximum") {
                map.insert("maximum".into(), json!(u64::MAX));
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// A route's body without its name: the path names the route. (A body that holds the
/// whole entry, `name` included, is taken too when the name matches the path.)
fn route_body_schema(reference: Value, schemas: &mut Schemas) -> Value {
    let name = reference["$ref"]
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .unwrap_or("RouteConfig")
        .to_string();
    let mut definition = schemas
        .generator
        .definitions()
        .get(&name)
        .cloned()
        .unwrap_or_else(|| reference.clone());
    if let Some(required) = definition.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "name");
    }
    if let Some(properties) = definition
        .get_mut("properties")
        .and_then(Value::as_object_mut)
    {
        properties.remove("name");
    }
    definition["title"] = json!("RouteBody");
    bound_integers(&mut definition);
    definition
}

/// What the filter takes as a plan's name.
fn plan_name() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"})
}

fn array_of_objects() -> Value {
    json!({"type": "array", "items": {"type": "object"}})
}

fn api_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["message", "type", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error", "permission_error", "not_found_error", "conflict_error", "api_error"]},
                "param": {"type": ["string", "null"]},
                "code": {"type": "string", "description": "a stable code, e.g. invalid_json, missing_credential, insufficient_scope, not_found, in_use"}
            }
        }}
    })
}

fn oauth_error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error", "error_description"],
        "properties": {
            "error": {"type": "string", "enum": ["invalid_request", "invalid_client", "invalid_scope", "unsupported_grant_type", "server_error"]},
            "error_description": {"type": "string"}
        }
    })
}

/// The paths, each with its operations by method.
#[derive(Default)]
struct Paths(Map<String, Value>);

impl Paths {
    fn add(&mut self, path: &str, method: &str, operation: Operation) {
        let entry = self.0.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[method] = operation.0;
    }
}

/// One operation, as it is described.
struct Operation(Value);

impl Operation {
    fn public(summary: &str) -> Operation {
        Operation(json!({"summary": summary, "responses": {}}))
    }

    /// Needs a credential with `scope`: answers 401 without a valid one, 403 without the
    /// scope, 500 when the store fails.
    fn secured(summary: &str, scope: &str) -> Operation {
        Operation::public(summary)
            .with("security", json!([{"tokenward": [scope]}]))
            .fails_with_header(401, "no valid credential (missing_credential, invalid_token, invalid_api_key, token_revoked, …)", "www-authenticate")
            .common(403, "insufficient_scope: the credential lacks the scope")
            .common(500, "internal_error: the control plane could not complete the request")
    }

    fn with(mut self, key: &str, value: Value) -> Operation {
        self.0[key] = value;
        self
    }

    fn path(self, name: &str, description: &str) -> Operation {
        self.path_as(name, description, json!({"type": "string", "minLength": 1}))
    }

    fn path_as(self, name: &str, description: &str, schema: Value) -> Operation {
        self.parameter(
            json!({"name": name, "in": "path", "required": true, "description": description,
            "schema": schema}),
        )
        .common(404, "not_found")
    }

    /// A query parameter; a malformed one answers 400.
    fn query(self, name: &str, schema: Value, description: &str) -> Operation {
        self.parameter(json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema}))
            .common(400, "invalid_request: a query parameter is malformed")
    }

    fn parameter(mut self, parameter: Value) -> Operation {
        match self.0.get_mut("parameters").and_then(Value::as_array_mut) {
            Some(list) => list.push(parameter),
            None => self.0["parameters"] = json!([parameter]),
        }
        self
    }

    /// A JSON body, read only after authentication.
    fn body(self, schema: Value) -> Operation {
        self.json_body(schema, true)
    }

    /// A JSON body that may be left out (its defaults then apply).
    fn optional_body(self, schema: Value) -> Operation {
        self.json_body(schema, false)
    }

    fn json_body(self, schema: Value, required: bool) -> Operation {
        self.with(
            "requestBody",
            json!({"required": required, "content": {"application/json": {"schema": schema}}}),
        )
        .fails(400, "invalid_json or invalid_request: the body is not what this call takes, or the change it asks for is refused (the message says why)")
        .common(413, "request_too_large: the body is over 2 MiB")
        .common(415, "unsupported_media_type: the body is not sent as application/json")
    }

    fn form_body(self, schema: Value) -> Operation {
        self.with(
            "requestBody",
            json!({"required": true, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}),
        )
    }

    fn answers(mut self, status: u16, description: &str, schema: Value) -> Operation {
        let mut response = json!({"description": description});
        if !schema.is_null() {
            response["content"] = json!({"application/json": {"schema": schema}});
        }
        self.0["responses"][status.to_string()] = response;
        self
    }

    /// An error answer in the `ApiError` shape, with what it means for this operation.
    fn fails(mut self, status: u16, description: &str) -> Operation {
        self.0["responses"][status.to_string()] = json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ApiError"}}}});
        self
    }

    /// An error every operation of a kind can answer; one the operation named stays.
    fn common(self, status: u16, description: &str) -> Operation {
        if self.0["responses"].get(status.to_string()).is_some() {
            return self;
        }
        self.fails(status, description)
    }

    fn fails_with_header(self, status: u16, description: &str, header: &str) -> Operation {
        let mut op = self.common(status, description);
        op.0["responses"][status.to_string()]["headers"] =
            json!({header: {"required": true, "schema": {"type": "string"}}});
        op
    }

    fn oauth_error(mut self, status: u16, description: &str) -> Operation {
        self.0["responses"][status.to_string()] = json!({"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}});
        self
    }
}
