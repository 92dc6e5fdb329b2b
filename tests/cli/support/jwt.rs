//! ES256 JSON Web Tokens as distribution 2.8's `auth: token` accepts them:
//! the signing certificate in the header's `x5c` (a self-signed leaf that is
//! the registry's `rootcertbundle`), `aud` a plain string equal to the
//! service, `exp`/`nbf` checked with 60 s of leeway, and `access` entries
//! `{type, name, actions}`. Signed with ring (raw `r||s`, base64url).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};

use super::{require_tool, run};

/// The `service` the registry names in its challenges (and the tokens' `aud`).
pub const SERVICE: &str = "bundle-test-registry";
/// The tokens' `iss`, which the registry checks.
pub const ISSUER: &str = "bundle-test-token-server";
/// How far in the past an expired token's `exp` lies: beyond the registry's 60 s leeway.
const EXPIRED_BY: Duration = Duration::from_secs(600);

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `repository` or `registry`.
    pub kind: String,
    /// The repository name, or `catalog`.
    pub name: String,
    /// The granted actions.
    pub actions: Vec<String>,
}

impl Access {
    /// `repository:<name>:<actions>`.
    pub fn repository(name: &str, actions: &[&str]) -> Self {
        Access {
            kind: "repository".to_owned(),
            name: name.to_owned(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    /// `registry:catalog:*`.
    pub fn catalog() -> Self {
        Access {
            kind: "registry".to_owned(),
            name: "catalog".to_owned(),
            actions: vec!["*".to_owned()],
        }
    }

    /// The claim entry `{type, name, actions}`.
    pub fn json(&self) -> Value {
        json!({ "type": self.kind, "name": self.name, "actions": self.actions })
    }
}

/// A signing key and its certificate.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    /// base64 (standard, padded) of the certificate's DER.
    x5c: String,
    cert_pem: PathBuf,
}

impl Signer {
    /// Makes an EC P-256 key (PKCS#8 for ring) and a self-signed
    /// certificate for it in `dir`, with `openssl`.
    pub fn generate(dir: &Path) -> Self {
        require_tool("openssl", "openssl");
        let (pem_key, der_key) = (dir.join("signer.key"), dir.join("signer.p8"));
        let (cert_pem, cert_der) = (dir.join("signer.crt"), dir.join("signer.der"));
        run(Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .arg("-out")
            .arg(&pem_key));
        run(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(&pem_key)
            .arg("-out")
            .arg(&der_key));
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-new",
                "-days",
                "7",
                "-subj",
                "/CN=bundle test token signer",
            ])
            .arg("-key")
            .arg(&pem_key)
            .arg("-out")
            .arg(&cert_pem));
        run(Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert_pem)
            .arg("-out")
            .arg(&cert_der));
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = std::fs::read(&der_key).expect("reading the PKCS#8 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .unwrap_or_else(|e| panic!("ring refused openssl's P-256 PKCS#8 key: {e}"));
        let der = std::fs::read(&cert_der).expect("reading the certificate DER");
        Signer {
            key,
            rng,
            x5c: STANDARD.encode(der),
            cert_pem,
        }
    }

    /// The certificate (PEM).
    pub fn cert_pem(&self) -> &Path {
        &self.cert_pem
    }

    /// A signed token for `subject` granting `access`, valid for `valid_for`
    /// or, when `expired`, with `exp` beyond the registry's leeway in the past.
    pub fn mint(
        &self,
        subject: &str,
        access: &[Access],
        valid_for: Duration,
        expired: bool,
    ) -> String {
        let now = unix_now();
        let (iat, exp) = if expired {
            let exp = now - EXPIRED_BY.as_secs();
            (exp - valid_for.as_secs(), exp)
        } else {
            (now, now + valid_for.as_secs())
        };
        let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.x5c] });
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": exp,
            "nbf": iat - 5,
            "iat": iat,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "access": access.iter().map(Access::json).collect::<Vec<_>>(),
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("signing a token with ES256");
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}
