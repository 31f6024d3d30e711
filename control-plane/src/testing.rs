//! Test support for every crate that drives the control plane (feature `test-support`): the
//! command lines the tests run more than once.

/// `route add` for a chat-style route: POST, scope `chat`, the model read from the body.
pub fn body_route_args<'a>(name: &'a str, prefix: &'a str, provider: &'a str) -> Vec<&'a str> {
    vec![
        "route",
        "add",
        "--name",
        name,
        "--path-prefix",
        prefix,
        "--method",
        "POST",
        "--scope",
        "chat",
        "--model-source",
        "body",
        "--provider",
        provider,
    ]
}
