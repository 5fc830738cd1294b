use super::*;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn schema() -> Constraint {
    Constraint::JsonSchema(default_schema())
}

#[test]
fn each_dialect_puts_the_schema_where_its_engine_reads_it() {
    let s = default_schema();
    let openai = body_fields(&schema(), Dialect::OpenAi).unwrap();
    assert_eq!(
        Value::Object(openai),
        json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": s, "strict": true}}})
    );
    let sglang = body_fields(&schema(), Dialect::Sglang).unwrap();
    assert!(sglang.contains_key("response_format"));
    assert_eq!(
        Value::Object(body_fields(&schema(), Dialect::Vllm).unwrap()),
        json!({"structured_outputs": {"json": s}})
    );
    assert_eq!(
        Value::Object(body_fields(&schema(), Dialect::VllmGuided).unwrap()),
        json!({"guided_json": s})
    );
}

#[test]
fn each_dialect_puts_a_regex_where_its_engine_reads_it_and_openai_refuses() {
    let r = Constraint::Regex("[a-z]{3}".into());
    assert_eq!(
        Value::Object(body_fields(&r, Dialect::Vllm).unwrap()),
        json!({"structured_outputs": {"regex": "[a-z]{3}"}})
    );
    assert_eq!(
        Value::Object(body_fields(&r, Dialect::VllmGuided).unwrap()),
        json!({"guided_regex": "[a-z]{3}"})
    );
    assert_eq!(
        Value::Object(body_fields(&r, Dialect::Sglang).unwrap()),
        json!({"regex": "[a-z]{3}"})
    );
    let e = body_fields(&r, Dialect::OpenAi).unwrap_err();
    assert!(e.contains("--structured-dialect"), "{e}");
}

#[test]
fn the_server_reads_back_every_dialect() {
    for c in [schema(), Constraint::Regex("x[0-9]+".into())] {
        for d in Dialect::ALL {
            let Ok(fields) = body_fields(&c, d) else {
                continue;
            };
            let mut body = json!({"prompt": "hi", "max_tokens": 5});
            body.as_object_mut().unwrap().extend(fields);
            assert_eq!(from_body(&body).as_ref(), Some(&c), "{d}");
        }
    }
    // SGLang's native string form, and nothing at all.
    let s = json!({"json_schema": "{\"type\":\"integer\"}"});
    assert_eq!(
        from_body(&s),
        Some(Constraint::JsonSchema(json!({"type": "integer"})))
    );
    assert_eq!(from_body(&json!({"prompt": "x"})), None);
    assert_eq!(
        from_body(&json!({"response_format": {"type": "json_object"}})),
        None
    );
}

#[test]
fn dialect_names_round_trip_and_engines_pick_theirs() {
    for d in Dialect::ALL {
        assert_eq!(d.as_str().parse::<Dialect>(), Ok(d));
    }
    assert!("guided"
        .parse::<Dialect>()
        .unwrap_err()
        .contains("vllm-guided"));
    assert_eq!(Dialect::for_engine("vllm"), Dialect::Vllm);
    assert_eq!(Dialect::for_engine("SGLang-0.5"), Dialect::Sglang);
    assert_eq!(Dialect::for_engine("openai"), Dialect::OpenAi);
}

#[test]
fn the_checker_accepts_valid_and_names_what_is_wrong_otherwise() {
    let c = Checker::new(&schema()).unwrap();
    let good = r#" {"city":"Lyon","country_code":"FR","population_millions":1,"is_capital":false,
        "climate":"temperate","landmarks":["Fourviere"]} "#;
    assert_eq!(c.check(good), OutputCheck::Valid);
    let OutputCheck::Invalid { reason } = c.check(&good.replace("\"FR\"", "\"XX\"")) else {
        panic!("an enum violation must be invalid")
    };
    assert!(reason.contains("country_code"), "{reason}");
    // Truncated by max_tokens: JSON that ends early.
    let OutputCheck::Invalid { reason } = c.check(&good[..40]) else {
        panic!("a truncated answer must be invalid")
    };
    assert!(reason.contains("truncated"), "{reason}");
    assert!(!c.check("Sure! Here is the JSON").is_valid());
}

#[test]
fn a_regex_must_match_the_whole_answer() {
    let c = Checker::new(&Constraint::Regex("[0-9]{3}-[0-9]{4}".into())).unwrap();
    assert!(c.check("555-1234").is_valid());
    assert!(!c.check("call 555-1234").is_valid());
    assert!(!c.check("555-12345").is_valid());
    assert!(Checker::new(&Constraint::Regex("(".into()))
        .unwrap_err()
        .contains("regex"));
    assert!(Checker::new(&Constraint::JsonSchema(json!({"type": 7})))
        .unwrap_err()
        .contains("schema"));
}

#[test]
fn the_default_schema_is_small_enough_for_128_tokens() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let checker = Checker::new(&schema()).unwrap();
    for _ in 0..50 {
        let text = generate(&schema(), &mut rng).unwrap();
        assert!(checker.check(&text).is_valid(), "{text}");
        assert!(token_pieces(&text).len() < 128, "{text}");
    }
}

#[test]
fn generated_regex_text_matches() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for p in [
        r"[0-9]{3}-[0-9]{4}",
        r"(yes|no|maybe)",
        r"[A-Z][a-z]+ \d{1,2}",
        r"\w+@example\.com",
        r"^(ab)*c?$",
    ] {
        let c = Constraint::Regex(p.into());
        let checker = Checker::new(&c).unwrap();
        for _ in 0..20 {
            let t = generate(&c, &mut rng).unwrap();
            assert!(checker.check(&t).is_valid(), "{p}: {t:?}");
        }
    }
    assert!(generate(&Constraint::Regex(r"\bx".into()), &mut rng).is_err());
}

#[test]
fn unsupported_schemas_are_refused_not_faked() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for s in [
        json!({"$ref": "#/defs/a"}),
        json!({"type": "string", "format": "email"}),
        json!({"type": "integer", "minimum": 5, "maximum": 4}),
        json!(false),
    ] {
        assert!(
            generate(&Constraint::JsonSchema(s.clone()), &mut rng).is_err(),
            "{s}"
        );
    }
}

#[test]
fn pieces_rebuild_the_text() {
    let t = r#"{"city":"Springfield","n":12345}"#;
    let p = token_pieces(t);
    assert_eq!(p.concat(), t);
    assert!(p.iter().all(|x| x.chars().count() <= 4));
}

/// Schemas built from the subset the generator supports.
fn arb_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!({"type": "boolean"})),
        Just(json!({"type": "null"})),
        (-50i64..50, 0i64..30)
            .prop_map(|(lo, w)| json!({"type": "integer", "minimum": lo, "maximum": lo + w})),
        (-5.0f64..5.0, 0.5f64..10.0)
            .prop_map(|(lo, w)| json!({"type": "number", "minimum": lo, "maximum": lo + w})),
        (0u64..4, 0u64..10)
            .prop_map(|(min, w)| json!({"type": "string", "minLength": min, "maxLength": min + w})),
        prop::collection::vec("[a-z]{1,6}", 1..4).prop_map(|v| json!({"enum": v})),
        Just(json!({"type": "string", "pattern": "^[A-Z]{2}[0-9]{2,3}$"})),
        Just(json!({"const": "fixed"})),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (inner.clone(), 0u64..3, 0u64..3).prop_map(|(items, min, w)| {
                json!({"type": "array", "items": items, "minItems": min, "maxItems": min + w})
            }),
            prop::collection::btree_map("[a-z]{1,5}", inner, 0..4).prop_map(|props| {
                let required: Vec<&String> = props.keys().step_by(2).collect();
                json!({"type": "object", "properties": props, "required": required,
                       "additionalProperties": false})
            }),
        ]
    })
}

proptest! {
    #[test]
    fn generated_instances_validate_against_their_schema(s in arb_schema(), seed in 0u64..1000) {
        let c = Constraint::JsonSchema(s.clone());
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let text = generate(&c, &mut rng).unwrap();
        let verdict = Checker::new(&c).unwrap().check(&text);
        prop_assert!(verdict.is_valid(), "{} for schema {}: {:?}", text, s, verdict);
    }
}
