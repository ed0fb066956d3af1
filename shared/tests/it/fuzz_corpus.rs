//! The fuzz target's property (`carteiro_shared::fuzzing::intake_input`) holds on its seed
//! corpus, on every fixture and on a deterministic batch of mutated inputs, so a plain
//! `cargo test` exercises what `cargo fuzz run webhook_intake` would.

use crate::{fixture, whatsapp_fixtures};
use carteiro_shared::fuzzing::{
    FuzzInput, NO_HEADER, PLAIN_SECRET, intake_input, send_input, split_input, structured_input,
};
use carteiro_shared::intake::signature::sign;
use std::borrow::Cow;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/webhook_intake")
}

fn send_corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/send_body")
}

/// A tiny deterministic mutator (xorshift), standing in for libFuzzer when it cannot run.
fn mutations(seeds: &[Vec<u8>], rounds: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..rounds).map(move |_| {
        let mut data = seeds[(next() as usize) % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            if data.is_empty() {
                break;
            }
            let at = (next() as usize) % data.len();
            match next() % 4 {
                0 => data[at] = next() as u8,
                1 => {
                    data.remove(at);
                }
                2 => data.insert(at, b"{}[]\",:0e-\\\r\n"[(next() as usize) % 13]),
                _ => data.truncate(at),
            }
        }
        data
    })
}

#[test]
fn the_send_property_holds_on_every_seed_and_the_seeds_reach_the_builder() {
    let seeds = files_in(send_corpus_dir());
    assert!(
        seeds.len() >= 12,
        "the send corpus has {} files",
        seeds.len()
    );
    let mut accepted = 0;
    for (name, data) in &seeds {
        assert_eq!(send_input(data), Ok(()), "{name}");
        let body: Result<serde_json::Value, _> = serde_json::from_slice(data);
        if body.is_ok_and(|b| carteiro_shared::domain::message::SendRequest::parse(&b).is_ok()) {
            accepted += 1;
        }
    }
    // Most seeds are valid bodies, so the payload properties are exercised, not only refusals.
    assert!(accepted >= 10, "only {accepted} seeds parse");
}

#[test]
fn the_send_property_holds_on_mutated_seeds() {
    let seeds: Vec<Vec<u8>> = files_in(send_corpus_dir())
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    for (round, data) in mutations(&seeds, 3000).enumerate() {
        assert_eq!(
            send_input(&data),
            Ok(()),
            "round {round}: {}",
            String::from_utf8_lossy(&data)
        );
    }
}

fn files_in(dir: PathBuf) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn the_property_holds_on_every_seed_in_the_fuzz_corpus() {
    let seeds = files_in(corpus_dir());
    assert!(
        seeds.len() >= 10,
        "the seed corpus has {} files",
        seeds.len()
    );
    for (name, data) in seeds {
        assert_eq!(intake_input(&data), Ok(()), "{name}");
    }
}

#[test]
fn the_property_holds_on_every_fixture_file() {
    for (name, data) in files_in(whatsapp_fixtures()) {
        assert_eq!(intake_input(&data), Ok(()), "{name}");
    }
}

#[test]
fn the_property_holds_on_mutated_fixtures() {
    let seeds: Vec<Vec<u8>> = files_in(whatsapp_fixtures())
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    for (round, mut data) in mutations(&seeds, 3000).enumerate() {
        if round % 2 == 0 {
            // Half of them in the structured form, signed with another secret.
            let header = sign(b"k", &data);
            data = structured_input(b"k", Some(&header), &data);
        }
        assert_eq!(
            intake_input(&data),
            Ok(()),
            "round {round}: {}",
            String::from_utf8_lossy(&data)
        );
    }
}

#[test]
fn plain_inputs_are_bodies_signed_with_the_fuzz_secret() {
    let body = fixture("webhook_msg_text.json");
    let input = split_input(&body);
    assert_eq!(input.secret, PLAIN_SECRET);
    assert_eq!(input.body, &body[..]);
    assert_eq!(
        input.header.as_deref(),
        Some(sign(PLAIN_SECRET, &body).as_str())
    );
    assert_eq!(split_input(b"").body, b"");
}

#[test]
fn structured_inputs_split_back_into_their_parts() {
    let data = structured_input(b"secret", Some("sha256=abc"), b"{\"object\":\"x\"}");
    assert_eq!(
        split_input(&data),
        FuzzInput {
            secret: b"secret",
            header: Some(Cow::Borrowed("sha256=abc")),
            body: b"{\"object\":\"x\"}",
        }
    );
    let data = structured_input(b"", None, b"body");
    assert_eq!(data[..3], [0, 0, NO_HEADER]);
    assert_eq!(split_input(&data).header, None);
    // Truncated structured inputs are clamped, not rejected.
    for data in [&[0u8][..], &[0, 9, 1], &[0, 0, 200, b'a']] {
        let input = split_input(data);
        assert!(input.body.is_empty() || input.header.is_some(), "{data:?}");
        assert_eq!(intake_input(data), Ok(()));
    }
    // A header that is not UTF-8 reads as "" (malformed).
    let data = [0, 1, b'k', 2, 0xff, 0xfe, b'{', b'}'];
    assert_eq!(split_input(&data).header.as_deref(), Some(""));
}
