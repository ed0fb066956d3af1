//! `X-Hub-Signature-256`: the published vectors verify, and any change to the body, the
//! signature or the header's form is refused with the right reason.

use crate::fixture;
use carteiro_shared::intake::signature::{self, SecretUsed, SignatureError, sign, verify};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let file: Value = serde_json::from_slice(&fixture("signature_test_vectors.json")).unwrap();
    file["vectors"].as_array().unwrap().clone()
}

fn vector(id: &str) -> Value {
    vectors().into_iter().find(|v| v["id"] == id).unwrap()
}

/// Vector 1: a real Meta delivery, byte-exact from its own file.
fn real_delivery() -> (Vec<u8>, Vec<u8>, String) {
    let v = vector("pywa-real-meta-text-message");
    let body = fixture(v["raw_body_file"].as_str().unwrap());
    let secret = v["app_secret"].as_str().unwrap().as_bytes().to_vec();
    let header = v["expected_x_hub_signature_256"]
        .as_str()
        .unwrap()
        .to_owned();
    (secret, body, header)
}

#[test]
fn the_real_meta_delivery_verifies_over_its_byte_exact_file() {
    let v = vector("pywa-real-meta-text-message");
    let (secret, body, header) = real_delivery();
    assert_eq!(body.len(), 511, "the raw body file must stay byte-exact");
    assert_eq!(body, v["raw_body"].as_str().unwrap().as_bytes());
    assert_eq!(
        verify(Some(&header), &body, &secret, None),
        Ok(SecretUsed::Current)
    );
    assert_eq!(sign(&secret, &body), header);
}

#[test]
fn the_unicode_vector_verifies_only_in_metas_escaped_wire_form() {
    let v = vector("whatsapp-api-js-unicode-escaped");
    let secret = v["app_secret"].as_str().unwrap().as_bytes();
    let header = v["expected_x_hub_signature_256"].as_str().unwrap();
    let escaped = v["bytes_actually_hmaced"].as_str().unwrap().as_bytes();
    let decoded = v["raw_body_as_decoded_string"].as_str().unwrap().as_bytes();
    assert!(escaped.is_ascii() && !decoded.is_ascii());
    assert_eq!(
        verify(Some(header), escaped, secret, None),
        Ok(SecretUsed::Current)
    );
    assert_eq!(
        verify(Some(header), decoded, secret, None),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        sign(secret, decoded),
        v["hmac_of_utf8_bytes_without_escaping_does_NOT_match"]
            .as_str()
            .unwrap()
    );
}

#[test]
fn every_vector_signs_to_its_expected_header() {
    let all = vectors();
    assert_eq!(all.len(), 3);
    for v in all {
        let secret = v["app_secret"].as_str().unwrap().as_bytes();
        let body = match (
            v["raw_body_file"].as_str(),
            v["bytes_actually_hmaced"].as_str(),
        ) {
            (Some(file), _) => fixture(file),
            (None, Some(escaped)) => escaped.as_bytes().to_vec(),
            (None, None) => v["raw_body"].as_str().unwrap().as_bytes().to_vec(),
        };
        let header = v["expected_x_hub_signature_256"].as_str().unwrap();
        assert_eq!(sign(secret, &body), header, "{}", v["id"]);
        assert_eq!(
            verify(Some(header), &body, secret, None),
            Ok(SecretUsed::Current),
            "{}",
            v["id"]
        );
    }
}

#[test]
fn sign_produces_sha256_and_64_lowercase_hex_digits() {
    let header = sign(b"secret", b"test");
    let hex = header.strip_prefix("sha256=").unwrap();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn flipping_any_bit_of_the_real_body_is_a_mismatch() {
    let (secret, body, header) = real_delivery();
    for i in 0..body.len() {
        for bit in 0..8 {
            let mut tampered = body.clone();
            tampered[i] ^= 1 << bit;
            assert_eq!(
                verify(Some(&header), &tampered, &secret, None),
                Err(SignatureError::Mismatch),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn a_truncated_extended_or_reserialised_body_is_a_mismatch() {
    let (secret, body, header) = real_delivery();
    let mismatch = |b: &[u8]| verify(Some(&header), b, &secret, None);
    assert_eq!(
        mismatch(&body[..body.len() - 1]),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        mismatch(&[&body[..], b"\n"].concat()),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(mismatch(b""), Err(SignatureError::Mismatch));
    // Parsing and writing the JSON back changes the bytes (key order here), so intake must
    // verify the raw body, never a re-serialisation.
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        mismatch(&serde_json::to_vec(&value).unwrap()),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn changing_any_hex_digit_of_the_signature_is_a_mismatch() {
    let (secret, body, header) = real_delivery();
    let prefix = "sha256=".len();
    for i in prefix..header.len() {
        for replacement in ['0', '7', 'a', 'f'] {
            let mut changed = header.clone().into_bytes();
            if changed[i] == replacement as u8 {
                continue;
            }
            changed[i] = replacement as u8;
            let changed = String::from_utf8(changed).unwrap();
            assert_eq!(
                verify(Some(&changed), &body, &secret, None),
                Err(SignatureError::Mismatch),
                "{changed}"
            );
        }
    }
}

#[test]
fn upper_and_mixed_case_hex_digits_are_accepted() {
    let (secret, body, header) = real_delivery();
    let hex = header.strip_prefix("sha256=").unwrap();
    let upper = format!("sha256={}", hex.to_ascii_uppercase());
    assert_eq!(
        verify(Some(&upper), &body, &secret, None),
        Ok(SecretUsed::Current)
    );
    let mixed: String = hex
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert_eq!(
        verify(Some(&format!("sha256={mixed}")), &body, &secret, None),
        Ok(SecretUsed::Current)
    );
}

#[test]
fn a_missing_header_is_missing() {
    let (secret, body, _) = real_delivery();
    assert_eq!(
        verify(None, &body, &secret, None),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        verify(None, &body, &secret, Some(b"old")),
        Err(SignatureError::Missing)
    );
}

#[test]
fn headers_not_of_the_form_sha256_and_64_hex_digits_are_malformed() {
    let (secret, body, header) = real_delivery();
    let hex = header.strip_prefix("sha256=").unwrap();
    let malformed = [
        String::new(),
        "sha256=".to_owned(),
        hex.to_owned(),          // no prefix
        format!("sha1={hex}"),   // the old SHA-1 header's prefix
        format!("SHA256={hex}"), // the prefix is exact
        format!("sha256 ={hex}"),
        format!(" sha256={hex}"),
        format!("sha256= {hex}"),
        format!("sha256={hex} "),
        format!("sha256={}", &hex[..63]), // too short
        format!("sha256={hex}0"),         // too long
        format!("sha256={hex}{hex}"),
        format!("sha256={}g", &hex[..63]), // not hex
        format!("sha256={}", "z".repeat(64)),
        format!("sha256={},", &hex[..63]),
        format!("sha256={}é", &hex[..62]), // 64 bytes, not 64 hex digits
        format!("sha256=sha256={}", &hex[..57]),
    ];
    for h in &malformed {
        assert_eq!(
            verify(Some(h), &body, &secret, None),
            Err(SignatureError::Malformed),
            "{h:?}"
        );
    }
}

#[test]
fn a_body_signed_with_the_previous_secret_verifies_as_previous() {
    let body = b"{\"object\":\"whatsapp_business_account\",\"entry\":[]}";
    let header = sign(b"old-secret", body);
    assert_eq!(
        verify(Some(&header), body, b"new-secret", Some(b"old-secret")),
        Ok(SecretUsed::Previous)
    );
    // Without the previous secret, or with another one, it is refused.
    assert_eq!(
        verify(Some(&header), body, b"new-secret", None),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&header), body, b"new-secret", Some(b"older-secret")),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn the_current_secret_is_tried_first() {
    let body = b"{}";
    let header = sign(b"same", body);
    assert_eq!(
        verify(Some(&header), body, b"same", Some(b"same")),
        Ok(SecretUsed::Current)
    );
    let header = sign(b"new", body);
    assert_eq!(
        verify(Some(&header), body, b"new", Some(b"old")),
        Ok(SecretUsed::Current)
    );
}

#[test]
fn an_empty_secret_never_verifies() {
    let body = b"{}";
    let header = sign(b"", body);
    assert_eq!(
        verify(Some(&header), body, b"", None),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&header), body, b"", Some(b"")),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        verify(Some(&header), body, b"current", Some(b"")),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn error_messages_name_the_header_and_never_echo_input() {
    assert_eq!(
        SignatureError::Missing.to_string(),
        "X-Hub-Signature-256 header is missing"
    );
    for e in [
        SignatureError::Missing,
        SignatureError::Malformed,
        SignatureError::Mismatch,
    ] {
        let text = e.to_string();
        assert!(text.starts_with("X-Hub-Signature-256"), "{text}");
        assert!(!text.contains('{') && !text.contains('"'), "{text}");
    }
}

#[test]
fn the_header_constant_is_the_lowercase_header_name() {
    assert_eq!(signature::HEADER, "x-hub-signature-256");
    assert!(http::HeaderName::from_static(signature::HEADER) == "X-Hub-Signature-256");
}
