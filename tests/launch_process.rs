//! The `process`, `external` and `sim` launchers against real servers on 127.0.0.1: the
//! servebench binary's own embedded server as the engine.

use servebench::launch::process::group_exists;
use servebench::launch::{
    ExternalSpec, InProcess, LaunchError, LaunchSpec, Launcher, ProcessSpec, Readiness, SimSpec,
    Target,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bin() -> String {
    env!("CARGO_BIN_EXE_servebench").to_string()
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| s.to_string()).collect()
}

fn target(name: &str, command: Vec<String>, timeout: Duration) -> Target {
    Target {
        name: name.into(),
        launch: LaunchSpec::Process(ProcessSpec::new(command)),
        readiness: Some(Readiness {
            timeout,
            interval: Duration::from_millis(50),
            ..Readiness::default()
        }),
    }
}

/// The embedded server behind `sh`, with a `sleep` beside it in the same process group: the
/// sleep stands for an engine's worker processes, which must die with the engine.
fn server_with_worker() -> Vec<String> {
    words(&[
        "sh",
        "-c",
        "sleep 300 & exec \"$0\" serve --port \"$1\" --ttft-ms 1 --itl-ms 1",
        &bin(),
        "{port}",
    ])
}

async fn wait_group_gone(pgid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !group_exists(pgid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn complete(base_url: &str) -> serde_json::Value {
    let resp = client()
        .post(format!("{base_url}/v1/completions"))
        .json(&serde_json::json!({
            "model": "servebench-fixed",
            "prompt": "hello",
            "max_tokens": 4,
        }))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test]
async fn a_server_process_starts_answers_and_stops_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let t = target("fixed", server_with_worker(), Duration::from_secs(30));
    let running = Launcher::new().start(&t, dir.path()).await.unwrap();

    let facts = running.facts().clone();
    assert_eq!(facts.kind, "process");
    assert_eq!(facts.engine, "servebench");
    assert!(
        facts.base_url.starts_with("http://127.0.0.1:"),
        "{}",
        facts.base_url
    );
    assert!(
        facts.command.iter().all(|w| w != "{port}"),
        "port substituted: {:?}",
        facts.command
    );
    assert!(facts.ready_after_s.is_some());
    let pgid = facts.pid.unwrap();
    assert!(running.is_alive().await);

    let answer = complete(running.base_url()).await;
    assert_eq!(answer["usage"]["completion_tokens"], 4, "{answer}");
    assert!(answer["choices"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    assert_eq!(
        running.log_path(),
        Some(dir.path().join("fixed.log").as_path())
    );
    let tail = running.logs_tail(20).join("\n");
    assert!(tail.contains("# servebench: target `fixed`"), "{tail}");
    assert!(tail.contains("serving model `servebench-fixed`"), "{tail}");

    running.stop().await;
    assert!(
        wait_group_gone(pgid).await,
        "process group {pgid} outlived stop()"
    );
}

#[tokio::test]
async fn dropping_the_handle_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let t = target("dropped", server_with_worker(), Duration::from_secs(30));
    let running = Launcher::new().start(&t, dir.path()).await.unwrap();
    let pgid = running.facts().pid.unwrap();
    drop(running);
    assert!(
        wait_group_gone(pgid).await,
        "process group {pgid} outlived drop"
    );
}

/// A servebench killed without running its destructors must not leave the engine behind: the
/// kernel signals the engine when the thread that started it ends. Here that thread is one
/// we end on purpose, with the handle leaked so that no destructor runs.
#[test]
fn an_engine_dies_with_the_thread_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let pgid = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // No worker beside it: only the leader gets the kernel's signal.
        let cmd = vec![bin(), "serve".into(), "--port".into(), "{port}".into()];
        let t = target("orphan", cmd, Duration::from_secs(30));
        let running = rt.block_on(Launcher::new().start(&t, &path)).unwrap();
        let pgid = running.facts().pid.unwrap();
        std::mem::forget(running);
        pgid
    })
    .join()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The leader (the server) goes; its reaped-by-nobody zombie may stay while we live, so
    // look at its state rather than at its existence.
    while leader_running(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !leader_running(pgid),
        "the engine outlived the thread that started it"
    );
}

fn leader_running(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit(')')
        .next()
        .is_some_and(|s| !s.trim_start().starts_with('Z') && !s.trim().is_empty())
}

#[tokio::test]
async fn a_server_that_dies_is_told_from_a_slow_one() {
    let dir = tempfile::tempdir().unwrap();
    let t = target("dies", server_with_worker(), Duration::from_secs(30));
    let running = Launcher::new().start(&t, dir.path()).await.unwrap();
    let pid = running.facts().pid.unwrap();
    // SAFETY: signals our own child.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while running.is_alive().await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let l = running.liveness().await;
    assert!(!l.is_alive(), "{l}");
    assert!(l.to_string().contains("signal 9"), "{l}");
    running.stop().await;
}

#[tokio::test]
async fn an_engine_that_exits_at_once_reports_its_code_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = words(&[
        "sh",
        "-c",
        "echo 'error: no model at /models/x' >&2; exit 3",
    ]);
    let t = target("quitter", cmd, Duration::from_secs(30));
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    match &err {
        LaunchError::ExitedEarly { code, tail, .. } => {
            assert_eq!(*code, Some(3));
            assert!(
                tail.lines
                    .iter()
                    .any(|l| l.contains("no model at /models/x")),
                "{tail:?}"
            );
        }
        other => panic!("expected ExitedEarly, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("exited with code 3") && msg.contains("no model at"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_readiness_timeout_shows_the_log_and_the_fix_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A marker duration so this test can find its own process afterwards.
    let cmd = words(&["sh", "-c", "echo 'loading weights 1/9'; exec sleep 31.4159"]);
    let mut t = target("slow", cmd, Duration::from_millis(600));
    // The engine never binds its port, so another test's server may bind it meanwhile (Linux
    // hands a just-freed port out again): probe a path only this test uses, so such a server
    // cannot look like this engine becoming ready.
    if let Some(r) = t.readiness.as_mut() {
        r.paths = vec!["/health-of-the-slow-test".into()];
    }
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LaunchError::NotReady { .. }), "{err:?}");
    assert!(msg.contains("loading weights 1/9"), "{msg}");
    assert!(msg.contains("raise readiness.timeout_s"), "{msg}");
    assert!(
        msg.contains("GET /health-of-the-slow-test"),
        "the last check is named: {msg}"
    );
    assert!(
        !marker_running("31.4159"),
        "the slow engine was left running"
    );
}

fn marker_running(marker: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // A zombie holds its name until reaped; it runs no more.
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'));
        !zombie && String::from_utf8_lossy(&cmdline).contains(marker)
    })
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let t = target(
        "ghost",
        words(&["/nonexistent/engine-binary"]),
        Duration::from_secs(5),
    );
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    assert!(matches!(err, LaunchError::Spawn { .. }), "{err:?}");
    assert!(err.to_string().contains("PATH"), "{err}");
}

#[tokio::test]
async fn external_targets_are_checked_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let t = target("engine", server_with_worker(), Duration::from_secs(30));
    let engine = Launcher::new().start(&t, dir.path()).await.unwrap();

    let ext = Target::new(
        "ext",
        LaunchSpec::External(ExternalSpec {
            base_url: format!("{}/", engine.base_url()),
            engine: Some("vllm".into()),
        }),
    );
    let running = Launcher::new().start(&ext, dir.path()).await.unwrap();
    assert_eq!(
        running.base_url(),
        engine.base_url(),
        "trailing slash trimmed"
    );
    assert_eq!(running.facts().engine, "vllm");
    assert!(running.logs_tail(5).is_empty());
    running.stop().await;
    assert!(
        engine.is_alive().await,
        "stopping an external target stops nothing"
    );
    engine.stop().await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gone = Target {
        readiness: Some(Readiness {
            timeout: Duration::from_millis(300),
            interval: Duration::from_millis(50),
            ..Readiness::default()
        }),
        ..Target::new(
            "gone",
            LaunchSpec::External(ExternalSpec {
                base_url: format!("http://127.0.0.1:{port}"),
                engine: None,
            }),
        )
    };
    let err = Launcher::new().start(&gone, dir.path()).await.unwrap_err();
    assert!(matches!(err, LaunchError::NotReady { .. }), "{err:?}");
}

#[tokio::test]
async fn sim_targets_use_the_factory() {
    use servebench::server::{self, FixedTiming, ServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let t = Target::new("sim", LaunchSpec::Sim(SimSpec::default()));
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    assert!(matches!(err, LaunchError::SimUnavailable { .. }), "{err:?}");

    let launcher = Launcher::with_sim(Arc::new(|_spec: &SimSpec| {
        let s = server::spawn_dedicated(
            Arc::new(FixedTiming::default()),
            ServerOptions::default(),
            1,
        )?;
        Ok(InProcess {
            base_url: s.url().to_string(),
            engine: "servebench-sim".into(),
            guard: Box::new(s),
        })
    }));
    let running = launcher.start(&t, dir.path()).await.unwrap();
    assert_eq!(running.facts().kind, "sim");
    let answer = complete(running.base_url()).await;
    assert_eq!(answer["usage"]["completion_tokens"], 4, "{answer}");
    running.stop().await;
}

#[test]
fn targets_read_from_toml_reject_unknown_keys() {
    let t: Target = toml::from_str(
        r#"
        name = "vllm-cpu"
        [launch]
        kind = "process"
        command = ["python", "-m", "vllm.entrypoints.openai.api_server", "--port", "{port}"]
        env = { VLLM_HOST_IP = "127.0.0.1" }
        [readiness]
        timeout_s = 180
        "#,
    )
    .unwrap();
    assert_eq!(t.effective_readiness().timeout, Duration::from_secs(180));
    assert!(matches!(t.launch, LaunchSpec::Process(_)));

    let d: Target = toml::from_str(
        "name = \"v\"\n[launch]\nkind = \"docker\"\nengine = \"vllm\"\nmodel = \"facebook/opt-125m\"",
    )
    .unwrap();
    assert_eq!(d.effective_readiness().timeout, Duration::from_secs(1200));

    for bad in [
        "name = \"x\"\n[launch]\nkind = \"process\"\ncommand = [\"a\"]\ncomand = [\"b\"]",
        "name = \"x\"\n[launch]\nkind = \"docker\"\nengine = \"vllm\"\nimage_tag = \"v1\"",
        "name = \"x\"\n[launch]\nkind = \"external\"\nbase_url = \"http://h\"\nurl = \"y\"",
        "name = \"x\"\n[launch]\nkind = \"kubernetes\"",
        "name = \"x\"\nlaunch = { kind = \"sim\" }\nextra = 1",
    ] {
        assert!(toml::from_str::<Target>(bad).is_err(), "accepted: {bad}");
    }
}

#[tokio::test]
async fn a_fixed_port_already_in_use_is_refused_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let mut t = target("fixed-port", server_with_worker(), Duration::from_secs(5));
    if let LaunchSpec::Process(p) = &mut t.launch {
        p.port = port;
    }
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    assert!(matches!(err, LaunchError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("already in use"), "{err}");
}

#[tokio::test]
async fn bad_names_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let t = target("../escape", server_with_worker(), Duration::from_secs(5));
    let err = Launcher::new().start(&t, dir.path()).await.unwrap_err();
    assert!(matches!(err, LaunchError::Config { .. }), "{err:?}");
}
