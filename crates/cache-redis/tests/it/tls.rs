//! TLS to Redis (issue 11, item 8): a `rediss://` URL really speaks TLS, and trusts the
//! CA named by `tls_ca_file`. The test generates a CA and a server certificate (rcgen),
//! starts a redis-server that listens with TLS only (`--port 0 --tls-port`), and runs a
//! session round trip through the store. Where redis-server lacks TLS support, the test
//! records a skip (a failure under `AUTH_TEST_REQUIRE_SERVICES=1`). Without the `tls`
//! feature there is nothing to test here (the config unit tests pin the refusal).

#![cfg(feature = "tls")]

use std::path::PathBuf;
use std::time::Duration;

use cache_core::{ManualClock, SessionStore};
use cache_redis::{RedisConfig, RedisStore};
use cache_testkit::{random_user, sample_session};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

use crate::support::{RedisServer, redis_server_available, temp_dir, test_config, wait_trusted};
use tempfile::TempDir;

/// PEM files of a throw-away CA and of a server certificate it signed for 127.0.0.1 and
/// localhost.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn generate() -> Self {
        let dir = temp_dir("tls-pki");
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "tiered-auth test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "redis test server");
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();

        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server_cert.pem()).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A config for `url` whose first connection gives up quickly (the failing cases wait
/// for it once).
fn config(url: &str, ca: Option<PathBuf>) -> RedisConfig {
    RedisConfig {
        tls_ca_file: ca,
        connect_timeout: Duration::from_millis(500),
        ..test_config(url, "tls")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_round_trips_sessions() {
    if !redis_server_available() {
        return;
    }
    let pki = Pki::generate();
    let (cert, key) = (pki.file("server.pem"), pki.file("server.key"));
    let Some(server) =
        tokio::task::spawn_blocking(move || RedisServer::start_tls("tls", &cert, &key))
            .await
            .unwrap()
    else {
        return;
    };
    let clock = ManualClock::starting_now();

    // Trusting the test CA: a full round trip over TLS.
    let store =
        RedisStore::connect(config(&server.tls_url(), Some(pki.file("ca.pem"))), clock.clone())
            .await
            .unwrap();
    wait_trusted(&store, Duration::from_secs(10)).await;
    let session = sample_session(&clock, random_user());
    store.create(&session).await.unwrap();
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session.clone()));
    assert!(store.delete(&session.key).await.unwrap());
    assert_eq!(store.get(&session.key).await.unwrap(), None);

    // The certificate is really checked: with the system roots only, the handshake fails
    // and the store never trusts the server.
    // (A machine whose system roots cannot be read refuses at construction: as good.)
    if let Ok(untrusted) = RedisStore::connect(config(&server.tls_url(), None), clock.clone()).await
    {
        assert!(!untrusted.is_trusted());
        let err = untrusted.get(&session.key).await.unwrap_err();
        assert!(err.is_unavailable(), "{err:?}");
    }

    // And the port speaks nothing but TLS: plain text gets nowhere.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let plain = RedisStore::connect(config(&plain, None), clock.clone()).await.unwrap();
    assert!(!plain.is_trusted());
    assert!(plain.get(&session.key).await.is_err());
    drop(server);
}
