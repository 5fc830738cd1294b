//! Container configuration, checked as the JSON the daemon receives. No daemon needed.

use super::*;
use serde_json::json;

const TOKEN: &str = "hf_TestTokenValue123456";

fn host() -> HostInputs {
    HostInputs {
        tokens: vec![("HF_TOKEN".into(), TOKEN.into())],
        default_hf_cache: Some("/home/u/.cache/huggingface".into()),
        unique: "42-abcd".into(),
        pid: 42,
    }
}

fn vllm() -> DockerSpec {
    DockerSpec {
        model: Some("facebook/opt-125m".into()),
        engine_args: vec!["--max-model-len".into(), "2048".into()],
        ..DockerSpec::new(Engine::Vllm)
    }
}

fn body_json(p: &ContainerPlan) -> serde_json::Value {
    serde_json::to_value(&p.body).unwrap()
}

#[test]
fn vllm_runs_the_image_entrypoint_with_model_and_port() {
    let p = plan("vllm", &vllm(), &host()).unwrap();
    let j = body_json(&p);
    assert_eq!(j["Image"], VLLM_IMAGE);
    assert!(
        j.get("Entrypoint").is_none(),
        "the image's own entrypoint is the server"
    );
    assert_eq!(
        j["Cmd"],
        json!([
            "--model",
            "facebook/opt-125m",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--max-model-len",
            "2048"
        ])
    );
    assert_eq!(p.container_port, 8000);
    assert_eq!(p.container_name, "servebench-vllm-42-abcd");
}

#[test]
fn the_port_is_published_on_loopback_only() {
    let p = plan("vllm", &vllm(), &host()).unwrap();
    let j = body_json(&p);
    assert_eq!(j["ExposedPorts"], json!({"8000/tcp": {}}));
    assert_eq!(
        j["HostConfig"]["PortBindings"],
        json!({"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]})
    );
    let fixed = DockerSpec {
        port: 18000,
        ..vllm()
    };
    let j = body_json(&plan("vllm", &fixed, &host()).unwrap());
    assert_eq!(
        j["HostConfig"]["PortBindings"]["8000/tcp"][0],
        json!({"HostIp": "127.0.0.1", "HostPort": "18000"})
    );
}

#[test]
fn gpus_shm_cache_and_labels_for_an_engine() {
    let j = body_json(&plan("vllm", &vllm(), &host()).unwrap());
    let hc = &j["HostConfig"];
    assert_eq!(
        hc["DeviceRequests"],
        json!([{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}])
    );
    assert_eq!(hc["ShmSize"], json!(16_i64 << 30));
    assert_eq!(
        hc["Binds"],
        json!(["/home/u/.cache/huggingface:/root/.cache/huggingface"])
    );
    assert_eq!(j["Labels"]["servebench"], "1");
    assert_eq!(j["Labels"]["servebench.target"], "vllm");
    assert_eq!(j["Labels"]["servebench.pid"], "42");

    let two = DockerSpec {
        gpus: Some(Gpus::Count(2)),
        shm_size: Some("2g".into()),
        ..vllm()
    };
    let hc = body_json(&plan("vllm", &two, &host()).unwrap())["HostConfig"].clone();
    assert_eq!(hc["DeviceRequests"][0]["Count"], 2);
    assert_eq!(hc["ShmSize"], json!(2_i64 << 30));

    let none = DockerSpec {
        gpus: Some(Gpus::None),
        mount_hf_cache: false,
        ..vllm()
    };
    let hc = body_json(&plan("vllm", &none, &host()).unwrap())["HostConfig"].clone();
    assert!(
        hc.get("DeviceRequests").is_none() && hc.get("Binds").is_none(),
        "{hc}"
    );
}

#[test]
fn sglang_runs_launch_server_on_its_port() {
    let spec = DockerSpec {
        model: Some("Qwen/Qwen3-0.6B".into()),
        ..DockerSpec::new(Engine::Sglang)
    };
    let p = plan("sglang", &spec, &host()).unwrap();
    let j = body_json(&p);
    assert_eq!(j["Image"], SGLANG_IMAGE);
    assert_eq!(
        j["Cmd"],
        json!([
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            "Qwen/Qwen3-0.6B",
            "--host",
            "0.0.0.0",
            "--port",
            "30000"
        ])
    );
    assert_eq!(j["ExposedPorts"], json!({"30000/tcp": {}}));
}

#[test]
fn custom_takes_its_command_and_no_gpus_by_default() {
    let spec = DockerSpec {
        image: Some("servebench-sim:test".into()),
        model: Some("servebench-fixed".into()),
        command: Some(vec![
            "serve".into(),
            "--port".into(),
            "{port}".into(),
            "--model".into(),
            "{model}".into(),
        ]),
        entrypoint: Some(vec!["/servebench".into()]),
        ..DockerSpec::new(Engine::Custom)
    };
    let p = plan("sim", &spec, &host()).unwrap();
    let j = body_json(&p);
    assert_eq!(
        j["Cmd"],
        json!(["serve", "--port", "8000", "--model", "servebench-fixed"])
    );
    assert_eq!(j["Entrypoint"], json!(["/servebench"]));
    let hc = &j["HostConfig"];
    assert!(
        hc.get("DeviceRequests").is_none()
            && hc.get("ShmSize").is_none()
            && hc.get("Binds").is_none(),
        "{hc}"
    );
    assert_eq!(p.command_line[0], "/servebench");
}

#[test]
fn the_token_reaches_the_container_env_and_no_debug_output() {
    let p = plan("vllm", &vllm(), &host()).unwrap();
    let env = p.body.env.clone().unwrap();
    assert!(
        env.contains(&format!("HF_TOKEN={TOKEN}")),
        "the container needs the token"
    );
    for shown in [
        format!("{p:?}"),
        format!("{:?}", p.redacted_json()),
        format!("{:?}", host()),
        format!("{:?}", vllm()),
        p.command_line.join(" "),
    ] {
        assert!(!shown.contains(TOKEN), "token leaked: {shown}");
    }
    assert!(format!("{p:?}").contains("HF_TOKEN=<redacted>"));

    let off = DockerSpec {
        pass_hf_token: false,
        ..vllm()
    };
    assert!(plan("vllm", &off, &host()).unwrap().body.env.is_none());
}

#[test]
fn configuration_mistakes_are_named_with_their_fix() {
    let e = plan("x", &DockerSpec::new(Engine::Custom), &host()).unwrap_err();
    assert!(e.contains("needs `image`"), "{e}");
    let e = plan("x", &DockerSpec::new(Engine::Vllm), &host()).unwrap_err();
    assert!(e.contains("needs `model`"), "{e}");
    let mut leaky = vllm();
    leaky.env.insert("HF_TOKEN".into(), "hf_x".into());
    let e = plan("x", &leaky, &host()).unwrap_err();
    assert!(e.contains("export HF_TOKEN") && !e.contains("hf_x"), "{e}");
    let relative = DockerSpec {
        hf_cache: Some("cache".into()),
        ..vllm()
    };
    assert!(plan("x", &relative, &host())
        .unwrap_err()
        .contains("absolute"));
}

#[test]
fn toml_spec_round_trip_and_unknown_keys() {
    let spec: DockerSpec = toml::from_str(
        r#"
        engine = "vllm"
        model = "facebook/opt-125m"
        engine_args = ["--dtype", "float16"]
        gpus = 1
        shm_size = "8g"
        "#,
    )
    .unwrap();
    assert_eq!(spec.gpus, Some(Gpus::Count(1)));
    assert_eq!(spec.pull, PullPolicy::Missing);
    let back: DockerSpec = toml::from_str(&toml::to_string(&spec).unwrap()).unwrap();
    assert_eq!(back, spec);
    for (text, ok) in [
        ("gpus = \"all\"", true),
        ("gpus = \"none\"", true),
        ("gpus = \"some\"", false),
        ("gpu = 1", false),
    ] {
        let r = toml::from_str::<DockerSpec>(&format!("engine = \"vllm\"\n{text}"));
        assert_eq!(r.is_ok(), ok, "{text}: {r:?}");
    }
    assert!(toml::from_str::<DockerSpec>("engine = \"tgi\"").is_err());
}

#[test]
fn sizes_tags_and_api_versions() {
    assert_eq!(parse_size("16g"), Ok(16 << 30));
    assert_eq!(parse_size("512MB"), Ok(512 << 20));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert!(parse_size("lots").is_err() && parse_size("3x").is_err() && parse_size("0").is_err());
    assert_eq!(
        split_tag("vllm/vllm-openai:v0.30.0"),
        ("vllm/vllm-openai", "v0.30.0")
    );
    assert_eq!(
        split_tag("localhost:5000/sim"),
        ("localhost:5000/sim", "latest")
    );
    assert_eq!(split_tag("repo@sha256:ab"), ("repo", "sha256:ab"));
    let v = max_supported_version(
        "client version 1.53 is too new. Maximum supported API version is 1.41",
    )
    .unwrap();
    assert_eq!((v.major_version, v.minor_version), (1, 41));
    assert!(max_supported_version("page not found").is_none());
}
