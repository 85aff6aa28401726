use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt;

use super::*;

fn app(s: &str) -> Scope {
    Scope::App(AppName::new(s).unwrap())
}

fn post_key(scope: &Scope, path: &str) -> ShareKey {
    ShareKey::of(scope, &Method::POST, path)
}

/// Polls `f` once: its result if it is ready.
fn now<F: Future + Unpin>(f: &mut F) -> Option<F::Output> {
    let waker = futures_util::task::noop_waker();
    match Pin::new(f).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

#[test]
fn a_newcomer_runs_waits_or_is_refused() {
    let l = Limits {
        running: 2,
        waiting: 2,
        retry_after: Duration::from_secs(1),
    };
    assert_eq!(admit(l, 2, 0), Admit::Run);
    assert_eq!(admit(l, 1, 0), Admit::Run);
    assert_eq!(admit(l, 0, 0), Admit::Wait);
    assert_eq!(admit(l, 0, 1), Admit::Wait);
    assert_eq!(admit(l, 0, 2), Admit::Refuse);
    // Never ahead of one that waits, even with a place free for a moment.
    assert_eq!(admit(l, 1, 1), Admit::Wait);
    assert_eq!(admit(l, 1, 2), Admit::Refuse);
}

#[test]
fn reads_and_actions_are_apart_and_the_device_key_has_a_share_per_app() {
    let a = app("a");
    let get = |s: &Scope, p: &str| ShareKey::of(s, &Method::GET, p);
    assert_eq!(get(&a, "/v2/applications/state").limits(), READS);
    assert_eq!(post_key(&a, "/v2/applications/a/restart").limits(), ACTIONS);
    assert_ne!(get(&a, "/v1/device"), post_key(&a, "/v1/update"));
    // An app's key: one share of actions, whatever the path names.
    assert_eq!(
        post_key(&a, "/v2/applications/a/restart-service"),
        post_key(&a, "/v2/applications/b/restart-service")
    );
    assert_eq!(post_key(&a, "/v1/reboot"), post_key(&a, "/v1/apps/a/stop"));
    // The device key: one per app named, one for device-wide actions.
    let d = Scope::Device;
    assert_eq!(
        post_key(&d, "/v2/applications/a/restart-service"),
        post_key(&d, "/v1/apps/a/stop")
    );
    assert_ne!(
        post_key(&d, "/v2/applications/a/restart-service"),
        post_key(&d, "/v2/applications/b/restart-service")
    );
    assert_eq!(post_key(&d, "/v1/reboot"), post_key(&d, "/v1/purge"));
    assert_eq!(
        post_key(&d, "/v2/applications/not%20a%20name/restart"),
        post_key(&d, "/v1/reboot")
    );
    // No key is another's.
    assert_ne!(post_key(&d, "/v1/reboot"), post_key(&a, "/v1/reboot"));
    assert_ne!(
        post_key(&a, "/v1/reboot"),
        post_key(&app("b"), "/v1/reboot")
    );
}

#[tokio::test]
async fn a_key_past_its_share_is_refused_and_others_are_not() {
    let shares = Shares::default();
    let a = post_key(&app("a"), "/v2/applications/a/restart-service");
    let running = shares.enter(a.clone()).await.unwrap();
    let mut w1 = Box::pin(shares.enter(a.clone()));
    let mut w2 = Box::pin(shares.enter(a.clone()));
    assert!(now(&mut w1).is_none() && now(&mut w2).is_none());
    assert_eq!(shares.counts(&a), Some((0, 2)));
    let Err(refused) = shares.enter(a.clone()).await else {
        panic!("a fourth action was let in");
    };
    assert_eq!(refused.retry_after, ACTIONS.retry_after);
    assert!(
        refused.message.contains("actions of the key of app a"),
        "{}",
        refused.message
    );
    // Another app's key, the device key, and app a's reads: at once.
    for other in [
        post_key(&app("b"), "/v2/applications/b/restart-service"),
        post_key(&Scope::Device, "/v2/applications/a/restart-service"),
        post_key(&Scope::Device, "/v1/reboot"),
        ShareKey::of(&app("a"), &Method::GET, "/v2/applications/state"),
    ] {
        let p = tokio::time::timeout(Duration::from_millis(100), shares.enter(other))
            .await
            .expect("at once")
            .expect("a place");
        drop(p);
    }
    // First come, first served: the place goes to the first waiter.
    drop(running);
    let first = now(&mut w1).expect("first waiter runs").unwrap();
    assert!(now(&mut w2).is_none());
    assert_eq!(shares.counts(&a), Some((0, 1)));
    // Room to wait again for one newcomer.
    let mut w3 = Box::pin(shares.enter(a.clone()));
    assert!(now(&mut w3).is_none());
    assert!(shares.enter(a.clone()).await.is_err());
    drop(first);
    let second = now(&mut w2).expect("second waiter runs").unwrap();
    drop(second);
    let third = now(&mut w3).expect("third waiter runs").unwrap();
    drop(third);
    // The share goes with its last request.
    assert_eq!(shares.counts(&a), None);
}

#[tokio::test]
async fn a_waiter_that_gives_up_leaves_the_queue() {
    let shares = Shares::default();
    let a = post_key(&app("a"), "/v1/update");
    let running = shares.enter(a.clone()).await.unwrap();
    let mut w1 = Box::pin(shares.enter(a.clone()));
    let mut w2 = Box::pin(shares.enter(a.clone()));
    assert!(now(&mut w1).is_none() && now(&mut w2).is_none());
    drop(w1);
    assert_eq!(shares.counts(&a), Some((0, 1)));
    let mut w3 = Box::pin(shares.enter(a.clone()));
    assert!(now(&mut w3).is_none());
    drop(running);
    let p2 = now(&mut w2).expect("the next waiter runs").unwrap();
    drop(w3);
    drop(p2);
    assert_eq!(shares.counts(&a), None);
}

/// A route that answers only when `backend` has a permit, like a restart
/// that waits for the engine.
fn slow_routes(shares: &Shares, backend: Arc<Semaphore>) -> Router {
    let restart = move || {
        let backend = backend.clone();
        async move {
            backend.acquire().await.unwrap().forget();
            "OK"
        }
    };
    Router::new()
        .route("/v2/applications/{app}/restart-service", post(restart))
        .route("/v1/device", get(|| async { "device" }))
        .route_layer(axum::middleware::from_fn_with_state(
            shares.clone(),
            within_share,
        ))
}

fn request(scope: &Scope, method: &str, uri: &str) -> axum::http::Request<Body> {
    let mut r = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    r.extensions_mut().insert(scope.clone());
    r
}

#[tokio::test]
async fn a_caller_that_hangs_up_keeps_its_place_until_its_action_is_answered() {
    let shares = Shares::default();
    let backend = Arc::new(Semaphore::new(0));
    let routes = slow_routes(&shares, backend.clone());
    let a = app("a");
    let path = "/v2/applications/a/restart-service";
    let key = post_key(&a, path);
    let call = |scope: &Scope, method: &str, uri: &str| {
        tokio::spawn(routes.clone().oneshot(request(scope, method, uri)))
    };
    // One runs (and waits for the engine), two wait for it.
    let first = call(&a, "POST", path);
    let wait = || async {
        while shares.counts(&key).map(|c| c.1) != Some(2) {
            tokio::task::yield_now().await;
        }
    };
    while shares.counts(&key) != Some((0, 0)) {
        tokio::task::yield_now().await;
    }
    let second = call(&a, "POST", path);
    let third = call(&a, "POST", path);
    wait().await;
    // The fourth: 429 at once, in the v2 shape, with Retry-After.
    let r = routes
        .clone()
        .oneshot(request(&a, "POST", path))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "5");
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "failed");
    // Its reads are another share.
    let r = routes
        .clone()
        .oneshot(request(&a, "GET", "/v1/device"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Every caller hangs up: those waiting leave; the one running keeps
    // its place while its restart is still under way.
    for c in [first, second, third] {
        c.abort();
        let _ = c.await;
    }
    assert_eq!(shares.counts(&key), Some((0, 0)));
    // A new call waits behind it: it does not run before that answers.
    let next = call(&a, "POST", path);
    while shares.counts(&key) != Some((0, 1)) {
        tokio::task::yield_now().await;
    }
    backend.add_permits(1);
    // The first restart answers: the place passes to the next call.
    backend.add_permits(1);
    let r = next.await.unwrap().unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    while shares.counts(&key).is_some() {
        tokio::task::yield_now().await;
    }
}
