//! The Docker launcher against a real Docker engine: builds a small image of servebench's own
//! simulator (FROM scratch: the binary and the libraries it links, so nothing is pulled) and
//! launches it through the same code path that launches vLLM. Where no Docker engine answers,
//! the test says it was skipped and why.

use bollard::query_parameters::{
    BuildImageOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use servebench::launch::{
    docker, DockerSpec, Engine, Gpus, LaunchError, LaunchSpec, Launcher, PullPolicy, Readiness,
    Target,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const MODEL: &str = "servebench-fixed";

#[tokio::test]
async fn the_simulator_image_runs_through_the_docker_launcher() {
    let docker = match docker::connect().await {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let context = match sim_image_context() {
        Ok(c) => c,
        Err(why) => {
            println!("skipped: cannot assemble the image context: {why}");
            return;
        }
    };
    let tag = format!("servebench-sim:test-{}", std::process::id());
    build_image(&docker, &tag, context).await;
    let image = ImageGuard { tag: tag.clone() };

    let dir = tempfile::tempdir().unwrap();
    serves_answers_and_leaves_nothing(&docker, &image.tag, dir.path()).await;
    dropping_the_handle_removes_the_container(&docker, &image.tag, dir.path()).await;
    an_early_exit_reports_code_and_log(&docker, &image.tag, dir.path()).await;
    leftovers_of_dead_runs_are_removed_and_live_ones_kept(&docker, &image.tag).await;
    println!("docker launcher checked with image {tag}");
}

fn sim_target(name: &str, image: &str, args: &[&str]) -> Target {
    let mut command: Vec<String> = ["serve", "--host", "0.0.0.0", "--port", "{port}"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    command.extend(args.iter().map(|s| s.to_string()));
    let spec = DockerSpec {
        image: Some(image.into()),
        model: Some(MODEL.into()),
        command: Some(command),
        gpus: Some(Gpus::None),
        pull: PullPolicy::Never,
        stop_timeout_s: 5,
        ..DockerSpec::new(Engine::Custom)
    };
    Target {
        name: name.into(),
        launch: LaunchSpec::Docker(spec),
        readiness: Some(Readiness {
            timeout: Duration::from_secs(60),
            interval: Duration::from_millis(100),
            ..Readiness::default()
        }),
    }
}

async fn serves_answers_and_leaves_nothing(docker: &Docker, image: &str, dir: &Path) {
    let t = sim_target(
        "sim-docker",
        image,
        &["--model", "{model}", "--ttft-ms", "1", "--itl-ms", "1"],
    );
    let running = Launcher::new().start(&t, dir).await.unwrap();
    let facts = running.facts().clone();
    assert_eq!(facts.kind, "docker");
    assert_eq!(facts.engine, "custom");
    assert_eq!(facts.image.as_deref(), Some(image));
    let digest = facts.image_digest.clone().unwrap_or_default();
    assert!(
        digest.starts_with("sha256:"),
        "locally built: the image id ({digest})"
    );
    assert!(
        facts.command.contains(&"serve".to_string()),
        "{:?}",
        facts.command
    );
    let id = facts.container_id.clone().unwrap();
    assert!(running.is_alive().await);

    // Published on loopback only, and labelled so that leftovers can be found.
    let info = docker
        .inspect_container(&id, None::<InspectContainerOptions>)
        .await
        .unwrap();
    let bindings = info.host_config.unwrap().port_bindings.unwrap();
    let b = bindings["8000/tcp"].clone().unwrap();
    assert_eq!(b[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(info.config.unwrap().labels.unwrap()["servebench"], "1");

    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer: serde_json::Value = client
        .post(format!("{}/v1/completions", running.base_url()))
        .json(&serde_json::json!({"model": MODEL, "prompt": "hello", "max_tokens": 5}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["model"], MODEL, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 5, "{answer}");
    assert!(answer["choices"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));

    // The container's own output reaches <log_dir>/<name>.log.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !running
        .logs_tail(50)
        .iter()
        .any(|l| l.contains("serving model"))
    {
        assert!(
            Instant::now() < deadline,
            "log: {:?}",
            running.logs_tail(50)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dir.join("sim-docker.log").exists());

    running.stop().await;
    assert_gone(docker, &id).await;
}

async fn dropping_the_handle_removes_the_container(docker: &Docker, image: &str, dir: &Path) {
    let t = sim_target("sim-dropped", image, &["--model", "{model}"]);
    let running = Launcher::new().start(&t, dir).await.unwrap();
    let id = running.facts().container_id.clone().unwrap();
    drop(running);
    assert_gone(docker, &id).await;
}

async fn an_early_exit_reports_code_and_log(docker: &Docker, image: &str, dir: &Path) {
    // A port that is no number: the CLI refuses it and exits with code 2 before serving.
    let t = sim_target("sim-broken", image, &["--port", "not-a-port"]);
    let err = Launcher::new().start(&t, dir).await.unwrap_err();
    match &err {
        LaunchError::ExitedEarly { code, tail, .. } => {
            assert_eq!(*code, Some(2), "{err}");
            assert!(!tail.lines.is_empty(), "{err}");
        }
        other => panic!("expected ExitedEarly, got {other}"),
    }
    let filters = HashMap::from([("label", vec!["servebench.target=sim-broken"])]);
    let options = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let left = docker.list_containers(Some(options)).await.unwrap();
    assert!(
        left.is_empty(),
        "a failed start left {} container(s)",
        left.len()
    );
}

async fn leftovers_of_dead_runs_are_removed_and_live_ones_kept(docker: &Docker, image: &str) {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
    // Above any pid_max Linux allows (2^22): no process has it.
    let dead_pid = (1u32 << 22) + 7;
    let mut ids = Vec::new();
    for (suffix, pid) in [("dead", dead_pid), ("live", std::process::id())] {
        let name = format!("servebench-leftover-{suffix}-{}", std::process::id());
        let body = ContainerCreateBody {
            image: Some(image.into()),
            labels: Some(HashMap::from([
                ("servebench".to_string(), "1".to_string()),
                ("servebench.pid".to_string(), pid.to_string()),
            ])),
            ..ContainerCreateBody::default()
        };
        let options = CreateContainerOptionsBuilder::default().name(&name).build();
        let created = docker.create_container(Some(options), body).await.unwrap();
        ids.push((name, created.id));
    }
    let removed = docker::remove_leftovers().await.unwrap();
    assert!(removed.contains(&ids[0].0), "{removed:?}");
    assert!(
        !removed.contains(&ids[1].0),
        "a live run's container was removed: {removed:?}"
    );
    assert_gone(docker, &ids[0].1).await;
    let options = RemoveContainerOptionsBuilder::default().force(true).build();
    docker
        .remove_container(&ids[1].1, Some(options))
        .await
        .unwrap();
}

async fn assert_gone(docker: &Docker, id: &str) {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        other => panic!("container {id} is still there: {other:?}"),
    }
}

/// A tar build context: a Dockerfile FROM scratch, the servebench binary (stripped when
/// `strip` is at hand) and the shared libraries `ldd` says it needs, at their own paths.
fn sim_image_context() -> Result<Vec<u8>, String> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_servebench"));
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stripped = work.path().join("servebench");
    let binary = match Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&bin)
        .status()
    {
        Ok(s) if s.success() => stripped,
        _ => bin.clone(),
    };
    let libs = linked_libraries(&bin)?;
    let mut tar = tar::Builder::new(Vec::new());
    let dockerfile = "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/servebench\"]\n\
                      # PID 1 gets no default SIGTERM action; servebench stops on SIGINT.\n\
                      STOPSIGNAL SIGINT\n";
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .map_err(|e| e.to_string())?;
    tar.append_path_with_name(&binary, "rootfs/servebench")
        .map_err(|e| e.to_string())?;
    for lib in libs {
        let inside = format!("rootfs{}", lib.display());
        tar.append_path_with_name(&lib, inside)
            .map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    tar.into_inner().map_err(|e| e.to_string())
}

fn linked_libraries(bin: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .map_err(|e| format!("ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("statically linked") || text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)".
    let libs: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => l.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect();
    if libs.is_empty() {
        return Err(format!("ldd listed no libraries: {text}"));
    }
    Ok(libs)
}

async fn build_image(docker: &Docker, tag: &str, context: Vec<u8>) {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build();
    let mut progress = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    panic!("building {tag} failed: {detail:?}");
                }
            }
            Err(e) => panic!("building {tag} failed: {e}"),
        }
    }
}

/// Removes the test image even when an assertion fails.
struct ImageGuard {
    tag: String,
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        let tag = self.tag.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let docker = docker::connect().await.ok()?;
                let options = RemoveImageOptionsBuilder::default().force(true).build();
                docker.remove_image(&tag, Some(options), None).await.ok()
            })
        })
        .join();
    }
}
