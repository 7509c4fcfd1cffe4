//! The bench-only routes (`/bench/baseline/*`, cargo feature `bench-routes`) are not part
//! of the default build: the route table mounted by `routes::configure` answers 404 for
//! them. With the feature, they are mounted.

use actix_web::{App, test};

const BENCH_PATHS: [&str; 2] = ["/bench/baseline/redis", "/bench/baseline/sql"];

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
