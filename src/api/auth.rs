//! Who a request speaks for: the device key reaches every app, an app's key
//! only that app's routes. The key middleware puts a `Scope` into the
//! request's extensions; handlers of per-app routes ask `Scope::reaches`.
//!
//! The key is read as balena's supervisor reads it: the query parameter
//! `apikey` when there is one (the name case-sensitive), else the header
//! `Authorization: Bearer <key>` or `ApiKey <key>` (the scheme in any
//! case). A request with no key, or a key that is not one, gets 401.
//!
//! Where a request arrived counts too (`Gateways`): at an app network's
//! gateway only the device key and the keys of the apps on that network
//! are taken, so one app's container cannot spend another app's listener
//! (its connections, its time) with its own key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Api;
use crate::names::AppName;

/// What the key of a request reaches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The device key: every app and the device routes.
    Device,
    /// An app's key: that app's routes only.
    App(AppName),
}

impl Scope {
    /// Who asked, for the journal: `HTTP API (key of app app1) POST
    /// /v1/reboot`, or `(device key)`.
    pub fn who(&self, what: &str) -> String {
        match self {
            Scope::Device => format!("HTTP API (device key) {what}"),
            Scope::App(a) => format!("HTTP API (key of app {a}) {what}"),
        }
    }

    /// The app an app's key speaks for; `None` for the device key.
    pub fn app(&self) -> Option<&AppName> {
        match self {
            Scope::Device => None,
            Scope::App(a) => Some(a),
        }
    }

    /// Whether a request with this scope may act on `app`.
    pub fn reaches(&self, app: &AppName) -> bool {
        match self {
            Scope::Device => true,
            Scope::App(own) => own == app,
        }
    }
}

/// The host address a request arrived at (TCP only), put into its
/// extensions by the connection that read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Arrived(pub IpAddr);

/// The host addresses of the app networks (their gateways) and whose
/// networks they are, as the last listing of the networks found them.
/// Shared by every listener: `api.tcp` on all addresses at the port the
/// apps are told takes their calls in place of the gateway listeners.
#[derive(Clone, Default)]
pub struct Gateways(Arc<RwLock<BTreeMap<IpAddr, BTreeSet<AppName>>>>);

impl Gateways {
    pub(super) fn set(&self, map: BTreeMap<IpAddr, BTreeSet<AppName>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = map;
    }

    /// Whether `scope` is taken at `arrived`: anywhere but an app
    /// network's gateway every key is (the unix socket, `api.tcp`,
    /// loopback for host-networked services); at a gateway the device
    /// key (balena's global key reaches every app from anywhere) and the
    /// keys of the apps whose network it is.
    pub(super) fn admit(&self, arrived: Option<IpAddr>, scope: &Scope) -> bool {
        let (Some(ip), Scope::App(app)) = (arrived, scope) else {
            return true;
        };
        let map = self.0.read().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).is_none_or(|apps| apps.contains(app))
    }
}

/// Checks the key, and that it is taken where the request arrived. On
/// success the request carries its `Scope`.
pub(super) async fn require_key(State(api): State<Api>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let arrived = req.extensions().get::<Arrived>().map(|a| a.0);
    let scope = given_key(req.uri().query(), auth)
        .and_then(|k| api.keys.borrow().scope_of(&k))
        .filter(|s| api.gateways.admit(arrived, s));
    match scope {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => (StatusCode::UNAUTHORIZED, "Unauthorized").into_response(),
    }
}

/// The key a request gives: `apikey` from the query first (when present
/// and not empty, it is the key, right or wrong), else the
/// `Authorization` header's `Bearer` or `ApiKey` credentials.
fn given_key(query: Option<&str>, authorization: Option<&str>) -> Option<String> {
    if let Some(q) = query {
        // A query that does not decode gives no key (then the header may).
        if let Ok(Query(map)) = Query::<HashMap<String, String>>::try_from_uri(
            &format!("/?{q}").parse().unwrap_or_default(),
        ) {
            if let Some(k) = map.get("apikey").filter(|k| !k.is_empty()) {
                return Some(k.clone());
            }
        }
    }
    let (scheme, key) = authorization?.split_once(' ')?;
    let known = ["bearer", "apikey"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    (known && !key.is_empty() && !key.contains(' ')).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: Option<&str>, a: Option<&str>) -> Option<String> {
        given_key(q, a)
    }

    #[test]
    fn the_query_comes_first_then_either_scheme_in_any_case() {
        assert_eq!(key(Some("apikey=abc"), None).as_deref(), Some("abc"));
        // The query wins over the header, even when it is the wrong key.
        assert_eq!(
            key(Some("x=1&apikey=abc"), Some("Bearer def")).as_deref(),
            Some("abc")
        );
        for h in [
            "Bearer def",
            "bearer def",
            "BEARER def",
            "ApiKey def",
            "apikey def",
            "APIKEY def",
        ] {
            assert_eq!(key(None, Some(h)).as_deref(), Some("def"), "{h}");
            // An empty query value, or another parameter, leaves the header.
            assert_eq!(key(Some("apikey="), Some(h)).as_deref(), Some("def"));
            assert_eq!(key(Some("force=1"), Some(h)).as_deref(), Some("def"));
        }
        // The parameter's name is case-sensitive.
        assert_eq!(key(Some("APIKEY=abc"), None), None);
        // Percent-encoding is decoded.
        assert_eq!(key(Some("apikey=a%2Db"), None).as_deref(), Some("a-b"));
    }

    #[test]
    fn other_schemes_and_shapes_give_no_key() {
        for h in [
            "Basic abc",
            "Bearer",
            "Bearer ",
            "Bearerabc",
            "Token abc",
            "Bearer a b",
            "",
        ] {
            assert_eq!(key(None, Some(h)), None, "{h:?}");
        }
        assert_eq!(key(None, None), None);
    }

    #[test]
    fn a_gateway_takes_the_device_key_and_its_own_apps_keys_only() {
        let a = AppName::new("a").unwrap();
        let b = AppName::new("b").unwrap();
        let (gw_a, gw_ab): (IpAddr, IpAddr) =
            ("172.20.0.1".parse().unwrap(), "172.21.0.1".parse().unwrap());
        let elsewhere: IpAddr = "192.168.1.5".parse().unwrap();
        let g = Gateways::default();
        g.set(BTreeMap::from([
            (gw_a, BTreeSet::from([a.clone()])),
            (gw_ab, BTreeSet::from([a.clone(), b.clone()])),
        ]));
        let (sa, sb) = (Scope::App(a), Scope::App(b));
        assert!(g.admit(Some(gw_a), &sa));
        assert!(!g.admit(Some(gw_a), &sb));
        assert!(g.admit(Some(gw_a), &Scope::Device));
        assert!(g.admit(Some(gw_ab), &sb));
        // Not a gateway, or no address (the unix socket): every key.
        assert!(g.admit(Some(elsewhere), &sb));
        assert!(g.admit(None, &sb));
        // A network gone: its address takes every key again (it is no
        // longer listened on for apps; api.tcp may still serve it).
        g.set(BTreeMap::new());
        assert!(g.admit(Some(gw_a), &sb));
    }

    #[test]
    fn a_scope_reaches_its_own_app_or_every_app() {
        let a = AppName::new("a").unwrap();
        let b = AppName::new("b").unwrap();
        assert!(Scope::Device.reaches(&a));
        assert!(Scope::App(a.clone()).reaches(&a));
        assert!(!Scope::App(a).reaches(&b));
    }
}
