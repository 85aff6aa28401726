//! Apps reach the HTTP API from their own bridge networks with their own
//! key, as on balena: the environment holdfast injects, the key scopes,
//! keys kept across restarts and rotated, and the environment following
//! config.json under the app's locks. Real dockerd, real containers.

mod common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use common::{free_port, ok, wait_for, Env};

/// An env with config.json (uuid, deviceType, listenPort) and its own
/// os-release; returns the port.
fn device_env(uuid: &str) -> (Env, u16) {
    let env = Env::with_docker();
    let os_release = env.dir.join("os-release");
    std::fs::write(
        &os_release,
        "NAME=\"TestOS\"\nPRETTY_NAME=\"TestOS 1.2 (test)\"\nVERSION_ID=1.2\n",
    )
    .unwrap();
    env.write_config(&format!("os_release = \"{}\"\n", os_release.display()));
    let port = free_port();
    write_config_json(
        &env,
        &json!({"uuid": uuid, "deviceType": "generic-test", "listenPort": port}),
    );
    (env, port)
}

/// config.json replaced as balenaOS does it (write beside, rename over).
fn write_config_json(env: &Env, value: &Value) {
    let dir = env.dir.join("boot");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join("config.json.new");
    std::fs::write(&tmp, serde_json::to_vec(value).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("config.json")).unwrap();
}

/// A service on the app's default bridge network, labelled for the API.
fn api_service(image: &str) -> Value {
    let mut s = common::engine::service(image);
    s.as_object_mut().unwrap().remove("network_mode");
    s["labels"] = json!({"io.balena.features.supervisor-api": "1"});
    s
}

fn apps_target(apps: &[(&str, Value)]) -> Value {
    let apps: serde_json::Map<String, Value> = apps
        .iter()
        .map(|(name, svc)| {
            (
                name.to_string(),
                json!({"release": "r1", "services": {"main": svc}}),
            )
        })
        .collect();
    common::engine::target(Value::Object(apps))
}

/// The container's environment.
fn environment(env: &Env, container: &str) -> BTreeMap<String, String> {
    ok(&env.exec(container, "env"))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// wget from inside the container: `url` is appended to the injected
/// address; `key` goes in the Authorization header (Bearer) when given.
fn call(env: &Env, container: &str, method: &str, path: &str, key: Option<&str>) -> Output {
    let auth = key
        .map(|k| format!("--header 'Authorization: Bearer {k}' "))
        .unwrap_or_default();
    let post = if method == "POST" {
        "--post-data '{}' --header 'Content-Type: application/json' "
    } else {
        ""
    };
    env.exec(
        container,
        &format!("wget -q -O- {auth}{post}\"$BALENA_SUPERVISOR_ADDRESS{path}\""),
    )
}

fn status_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn gateway(env: &Env, network: &str) -> String {
    ok(&env.docker(&[
        "network",
        "inspect",
        network,
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]))
    .trim()
    .to_owned()
}

fn started_at(env: &Env, container: &str) -> String {
    ok(&env.docker(&["inspect", "-f", "{{.State.StartedAt}}", container]))
        .trim()
        .to_owned()
}

fn app_key(env: &Env, app: &str) -> String {
    std::fs::read_to_string(env.state().join("api-keys").join(app))
        .unwrap()
        .trim()
        .to_owned()
}

fn device_key(env: &Env) -> String {
    std::fs::read_to_string(env.state().join("api-key"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn apps_reach_the_api_on_their_own_network_with_their_own_key() {
    let (mut env, port) = device_env("uuid-1");
    let image = env.busybox_image();
    env.start_daemon().await;
    let mut own = api_service(&image);
    own["environment"] = json!({"BALENA_DEVICE_TYPE": "set-by-the-service", "R": "1"});
    ok(&env.apply(&apps_target(&[
        ("app1", own),
        ("app2", api_service(&image)),
    ])));
    env.wait_app("app1", "applied").await;
    env.wait_app("app2", "applied").await;
    let c1 = env.container_of("app1", "main");
    let c2 = env.container_of("app2", "main");
    let gw1 = gateway(&env, "app1_default");
    let e = environment(&env, &c1);

    // balena's environment, each with its RESIN_ twin.
    let arch = e["BALENA_DEVICE_ARCH"].clone();
    assert!(!arch.is_empty());
    for (k, v) in [
        ("APP_ID", "app1"),
        ("APP_UUID", "app1"),
        ("APP_NAME", "app1"),
        ("SERVICE_NAME", "main"),
        ("DEVICE_UUID", "uuid-1"),
        ("DEVICE_ARCH", arch.as_str()),
        ("HOST_OS_VERSION", "TestOS 1.2 (test)"),
        ("APP_LOCK_PATH", "/tmp/balena/updates.lock"),
        ("SUPERVISOR_HOST", gw1.as_str()),
        ("SUPERVISOR_PORT", &port.to_string()),
        ("SUPERVISOR_ADDRESS", &format!("http://{gw1}:{port}")),
        ("SUPERVISOR_API_KEY", &app_key(&env, "app1")),
    ] {
        for ns in ["BALENA", "RESIN"] {
            assert_eq!(
                e.get(&format!("{ns}_{k}")).map(String::as_str),
                Some(v),
                "{ns}_{k}: {e:?}"
            );
        }
    }
    assert_eq!(e["BALENA"], "1");
    assert_eq!(e["RESIN"], "1");
    assert_eq!(
        e["RESIN_SERVICE_KILL_ME_PATH"],
        "/tmp/balena/handover-complete"
    );
    // The service's own value wins; its twin is holdfast's.
    assert_eq!(e["BALENA_DEVICE_TYPE"], "set-by-the-service");
    assert_eq!(e["RESIN_DEVICE_TYPE"], "generic-test");
    let k1 = e["BALENA_SUPERVISOR_API_KEY"].clone();
    let k2 = environment(&env, &c2)["BALENA_SUPERVISOR_API_KEY"].clone();
    assert_ne!(k1, k2);
    assert_ne!(k1, device_key(&env));
    // The key is in no log line.
    assert!(!env.log().contains(&k1));

    // Reached from the bridge network, no host networking, no api.tcp.
    assert_eq!(ok(&call(&env, &c1, "GET", "/ping", None)), "OK");
    let out = ok(&call(&env, &c1, "GET", "/v1/device", Some(&k1)));
    assert!(out.contains("supervisor_version"), "{out}");
    // ?apikey= works as well; no key, or a made-up one, does not.
    ok(&env.exec(
        &c1,
        "wget -q -O- \"$BALENA_SUPERVISOR_ADDRESS/v1/device?apikey=$BALENA_SUPERVISOR_API_KEY\"",
    ));
    let out = call(&env, &c1, "GET", "/v1/device", None);
    assert!(status_of(&out).contains("401"), "{}", status_of(&out));
    let out = call(&env, &c1, "GET", "/v1/device", Some("0123456789abcdef0123"));
    assert!(status_of(&out).contains("401"), "{}", status_of(&out));

    // A body over the documented 1 MiB limit: 413 as soon as its length
    // is announced, and the next request from the same container is
    // answered.
    let request = "POST /v2/applications/app1/restart HTTP/1.1\\r\\nHost: api\\r\\n\
                   Authorization: Bearer %s\\r\\nContent-Type: application/json\\r\\n\
                   Content-Length: 1100000\\r\\n\\r\\n";
    let out = ok(&env.exec(
        &c1,
        &format!(
            "printf '{request}' \"$BALENA_SUPERVISOR_API_KEY\" \
             | nc -w 10 \"$BALENA_SUPERVISOR_HOST\" \"$BALENA_SUPERVISOR_PORT\""
        ),
    ));
    assert!(out.starts_with("HTTP/1.1 413"), "{out}");
    let out = ok(&call(&env, &c1, "GET", "/v1/device", Some(&k1)));
    assert!(out.contains("supervisor_version"), "{out}");

    // Another app's key: 401 on that app's routes, nothing restarted.
    let before = started_at(&env, &c1);
    let out = call(
        &env,
        &c2,
        "POST",
        "/v2/applications/app1/restart",
        Some(&k2),
    );
    assert!(status_of(&out).contains("401"), "{}", status_of(&out));
    assert_eq!(started_at(&env, &c1), before);
    // Its own key restarts its own app (the call dies with the container).
    let c2_before = started_at(&env, &c2);
    let _ = call(
        &env,
        &c2,
        "POST",
        "/v2/applications/app2/restart",
        Some(&k2),
    );
    wait_for(Duration::from_secs(30), || {
        let env = &env;
        let (c2, before) = (c2.clone(), c2_before.clone());
        async move { started_at(env, &c2) != before && env.exec(&c2, "true").status.success() }
    })
    .await
    .expect("app2 restarted by its own key");
    let c2_started = started_at(&env, &c2);
    // The device key reaches every app, from any app's container.
    let dk = device_key(&env);
    assert_eq!(
        ok(&call(
            &env,
            &c2,
            "POST",
            "/v2/applications/app1/restart",
            Some(&dk)
        )),
        "OK"
    );
    assert_ne!(started_at(&env, &c1), before);
    assert_eq!(started_at(&env, &c2), c2_started);

    // Served on the gateways only: not on loopback (no host-networked
    // service asks), and a network's listener goes with the network.
    let gw2 = gateway(&env, "app2_default");
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(std::net::TcpStream::connect((gw2.as_str(), port)).is_ok());
    let mut only1 = api_service(&image);
    only1["environment"] = json!({"BALENA_DEVICE_TYPE": "set-by-the-service", "R": "1"});
    ok(&env.apply(&apps_target(&[("app1", only1)])));
    wait_for(Duration::from_secs(60), || {
        let env = &env;
        async move {
            !env.docker(&["network", "inspect", "app2_default"])
                .status
                .success()
        }
    })
    .await
    .expect("app2's network is removed");
    // The listener closes right after (the next listing of the networks).
    let addr: std::net::SocketAddr = format!("{gw2}:{port}").parse().unwrap();
    wait_for(Duration::from_secs(10), || async move {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
    })
    .await
    .unwrap_or_else(|_| panic!("still listening on {addr}"));
    // Its key goes with it.
    let app2_key = env.state().join("api-keys/app2");
    wait_for(Duration::from_secs(10), || {
        let gone = !app2_key.exists();
        async move { gone }
    })
    .await
    .expect("app2's key is removed with the app");
    assert_eq!(ok(&call(&env, &c1, "GET", "/ping", None)), "OK");
}

#[tokio::test]
async fn keys_persist_across_restarts_and_rotate_into_the_containers() {
    let (mut env, _port) = device_env("uuid-1");
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&apps_target(&[("app1", api_service(&image))])));
    env.wait_app("app1", "applied").await;
    let c = env.container_of("app1", "main");
    let k1 = app_key(&env, "app1");
    assert_eq!(environment(&env, &c)["BALENA_SUPERVISOR_API_KEY"], k1);
    let mode = std::fs::metadata(env.state().join("api-keys/app1")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    // A restart keeps the key and the container, and listens again.
    env.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    env.start_daemon().await;
    env.wait_app("app1", "applied").await;
    assert_eq!(app_key(&env, "app1"), k1);
    assert_eq!(env.container_of("app1", "main"), c);
    wait_for(Duration::from_secs(10), || {
        let env = &env;
        let c = c.clone();
        let k1 = k1.clone();
        async move {
            call(env, &c, "GET", "/v1/device", Some(&k1))
                .status
                .success()
        }
    })
    .await
    .expect("the old key works after a restart");

    // Rotating: a new key at once, the container made again with it.
    let out = env.cli(&["api-key", "rotate", "app1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let k2 = app_key(&env, "app1");
    assert_ne!(k2, k1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&k2));
    wait_for(Duration::from_secs(60), || {
        let env = &env;
        let c = c.clone();
        async move {
            let now: Vec<_> = env
                .containers("app1")
                .into_iter()
                .filter(|x| x.2 == "running")
                .collect();
            now.len() == 1 && now[0].1 != c
        }
    })
    .await
    .expect("the container is made again");
    env.wait_app("app1", "applied").await;
    let c2 = env.container_of("app1", "main");
    assert_eq!(environment(&env, &c2)["BALENA_SUPERVISOR_API_KEY"], k2);
    assert!(call(&env, &c2, "GET", "/v1/device", Some(&k2))
        .status
        .success());
    // The old key goes once the app's containers all have the new one.
    wait_for(Duration::from_secs(10), || {
        let (env, c2, k1) = (&env, c2.clone(), k1.clone());
        async move { status_of(&call(env, &c2, "GET", "/v1/device", Some(&k1))).contains("401") }
    })
    .await
    .expect("the old key is refused");

    // The device key: replaced, the old one refused at once.
    let d1 = device_key(&env);
    assert!(call(&env, &c2, "GET", "/v1/device", Some(&d1))
        .status
        .success());
    ok(&env.cli(&["api-key", "rotate"]));
    let d2 = device_key(&env);
    assert_ne!(d1, d2);
    assert!(call(&env, &c2, "GET", "/v1/device", Some(&d2))
        .status
        .success());
    assert!(!call(&env, &c2, "GET", "/v1/device", Some(&d1))
        .status
        .success());
    // The app's container stays: the device key is not in it.
    assert_eq!(env.container_of("app1", "main"), c2);
    // An app not in the target has no key to rotate.
    let out = env.cli(&["api-key", "rotate", "nope"]);
    assert!(!out.status.success());
    assert!(!env.log().contains(&k2) && !env.log().contains(&d2));
}

#[tokio::test]
async fn a_new_device_uuid_recreates_the_containers_under_their_locks() {
    let (mut env, port) = device_env("uuid-1");
    let image = env.busybox_image();
    env.start_daemon().await;
    // Host networking: told 127.0.0.1, served there.
    let mut s = common::engine::service(&image);
    s["network_mode"] = json!("host");
    s["labels"] = json!({"io.balena.features.supervisor-api": "1"});
    ok(&env.apply(&apps_target(&[("app1", s)])));
    env.wait_app("app1", "applied").await;
    let c = env.container_of("app1", "main");
    let e = environment(&env, &c);
    assert_eq!(e["BALENA_DEVICE_UUID"], "uuid-1");
    assert_eq!(
        e["BALENA_SUPERVISOR_ADDRESS"],
        format!("http://127.0.0.1:{port}")
    );
    assert_eq!(ok(&call(&env, &c, "GET", "/ping", None)), "OK");

    ok(&env.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    write_config_json(
        &env,
        &json!({"uuid": "uuid-2", "deviceType": "generic-test", "listenPort": port}),
    );
    env.wait_app("app1", "waiting").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.container_of("app1", "main"),
        c,
        "made again while locked"
    );
    assert_eq!(environment(&env, &c)["BALENA_DEVICE_UUID"], "uuid-1");

    ok(&env.exec(&c, "rm /tmp/balena/updates.lock"));
    env.wait_app("app1", "applied").await;
    let c2 = env.container_of("app1", "main");
    assert_ne!(c2, c);
    let e = environment(&env, &c2);
    assert_eq!(e["BALENA_DEVICE_UUID"], "uuid-2");
    assert_eq!(e["RESIN_DEVICE_UUID"], "uuid-2");
}

#[tokio::test]
async fn a_rotated_key_still_answers_a_locked_app_until_its_containers_have_the_new_one() {
    let (mut env, _port) = device_env("uuid-1");
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&apps_target(&[("app1", api_service(&image))])));
    env.wait_app("app1", "applied").await;
    let c = env.container_of("app1", "main");
    let k1 = app_key(&env, "app1");
    wait_for(Duration::from_secs(10), || {
        let (env, c, k1) = (&env, c.clone(), k1.clone());
        async move {
            call(env, &c, "GET", "/v1/device", Some(&k1))
                .status
                .success()
        }
    })
    .await
    .expect("the API answers the app");

    // The app holds its lock and asks the API when to let go.
    ok(&env.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    ok(&env.cli(&["api-key", "rotate", "app1"]));
    let k2 = app_key(&env, "app1");
    assert_ne!(k2, k1);
    env.wait_app("app1", "waiting").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.container_of("app1", "main"),
        c,
        "made again while locked"
    );
    assert_eq!(environment(&env, &c)["BALENA_SUPERVISOR_API_KEY"], k1);
    let out = call(&env, &c, "GET", "/v1/device", Some(&k1));
    assert!(out.status.success(), "{}", status_of(&out));
    // The old key still reaches only its own app.
    let out = call(
        &env,
        &c,
        "POST",
        "/v2/applications/other/restart",
        Some(&k1),
    );
    assert!(status_of(&out).contains("401"), "{}", status_of(&out));

    // Let go: the new container has the new key, the old key is refused.
    ok(&env.exec(&c, "rm /tmp/balena/updates.lock"));
    env.wait_app("app1", "applied").await;
    let c2 = env.container_of("app1", "main");
    assert_ne!(c2, c);
    assert_eq!(environment(&env, &c2)["BALENA_SUPERVISOR_API_KEY"], k2);
    assert!(call(&env, &c2, "GET", "/v1/device", Some(&k2))
        .status
        .success());
    wait_for(Duration::from_secs(10), || {
        let (env, c2, k1) = (&env, c2.clone(), k1.clone());
        async move { status_of(&call(env, &c2, "GET", "/v1/device", Some(&k1))).contains("401") }
    })
    .await
    .expect("the old key is refused once the containers have the new one");
}

#[tokio::test]
async fn a_locked_app_still_reaches_the_api_on_the_old_port() {
    let (mut env, port) = device_env("uuid-1");
    let image = env.busybox_image();
    env.start_daemon().await;
    ok(&env.apply(&apps_target(&[("app1", api_service(&image))])));
    env.wait_app("app1", "applied").await;
    let c = env.container_of("app1", "main");
    let k = app_key(&env, "app1");
    wait_for(Duration::from_secs(10), || {
        let (env, c, k) = (&env, c.clone(), k.clone());
        async move {
            call(env, &c, "GET", "/v1/device", Some(&k))
                .status
                .success()
        }
    })
    .await
    .expect("the API answers the app");

    ok(&env.exec(&c, "set -C; : > /tmp/balena/updates.lock"));
    env.wait_locks(&["app1/main"]).await;
    let new_port = free_port();
    write_config_json(
        &env,
        &json!({"uuid": "uuid-1", "deviceType": "generic-test", "listenPort": new_port}),
    );
    env.wait_app("app1", "waiting").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.container_of("app1", "main"),
        c,
        "made again while locked"
    );
    let told = &environment(&env, &c)["BALENA_SUPERVISOR_PORT"];
    assert_eq!(told, &port.to_string());
    let out = call(&env, &c, "GET", "/v1/device", Some(&k));
    assert!(out.status.success(), "old port: {}", status_of(&out));

    ok(&env.exec(&c, "rm /tmp/balena/updates.lock"));
    env.wait_app("app1", "applied").await;
    let c2 = env.container_of("app1", "main");
    assert_ne!(c2, c);
    let told = &environment(&env, &c2)["BALENA_SUPERVISOR_PORT"];
    assert_eq!(told, &new_port.to_string());
    assert!(call(&env, &c2, "GET", "/v1/device", Some(&k))
        .status
        .success());
    // The old port closes once no container has it.
    let gw = environment(&env, &c2)["BALENA_SUPERVISOR_HOST"].clone();
    wait_for(Duration::from_secs(10), || {
        let (env, c2, k, gw) = (&env, c2.clone(), k.clone(), gw.clone());
        async move {
            let old = format!(
                "wget -q -O- --header 'Authorization: Bearer {k}' http://{gw}:{port}/v1/device"
            );
            !env.exec(&c2, &old).status.success()
        }
    })
    .await
    .expect("the old port is closed");
}
