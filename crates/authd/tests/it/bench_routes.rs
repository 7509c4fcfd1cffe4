//! The bench-only routes (`/bench/baseline/*`, cargo feature `bench-routes`) are not part
//! of the default build: the route table mounted by `routes::configure` answers 404 for
//! them. With the feature, they are mounted, and the argon2 baseline verifies.

use actix_web::{App, test};

const BENCH_PATHS: [&str; 3] =
    ["/bench/baseline/redis", "/bench/baseline/sql", "/bench/baseline/argon2"];

#[cfg(not(feature = "bench-routes"))]
#[actix_web::test]
async fn the_default_build_has_no_bench_route() {
    let app = test::init_service(App::new().configure(authd::routes::configure)).await;
    for path in BENCH_PATHS {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_eq!(response.status().as_u16(), 404, "{path} is served by the default build");
    }
    // The table itself is mounted: a real route answers.
    let live = test::TestRequest::get().uri("/health/live").to_request();
    assert_eq!(test::call_service(&app, live).await.status().as_u16(), 200);
}

#[cfg(feature = "bench-routes")]
#[actix_web::test]
async fn the_bench_routes_are_mounted_with_the_feature() {
    let app = test::init_service(App::new().configure(authd::routes::configure)).await;
    for path in BENCH_PATHS {
        let response =
            test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
        assert_ne!(response.status().as_u16(), 404, "{path} is not mounted");
    }
}

/// The argon2 baseline needs only the flows (no backend of its own): one verification
/// through them, answered 200.
#[cfg(feature = "bench-routes")]
#[actix_web::test]
async fn the_argon2_baseline_verifies_through_the_flows() {
    let clock = cache_core::ManualClock::starting_now();
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    let mut settings = authd::settings::Settings::default();
    settings.mail.dir = std::env::temp_dir();
    let parts = authd::Application::builder(settings)
        .clock(clock)
        .sql_store(sql)
        .insecure_fast_hashing()
        .build_parts()
        .await
        .unwrap();
    let app = test::init_service(
        App::new()
            .app_data(actix_web::web::Data::new(parts.service.clone()))
            .configure(authd::routes::configure),
    )
    .await;
    let request = test::TestRequest::get().uri("/bench/baseline/argon2").to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(test::read_body(response).await, "ok");
}
