//! A minimal read-only status page at `/`, until the dashboard lands: it shows that the
//! server runs and points to the API. It needs no credential and shows no fleet data.

use axum::response::Html;

pub async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Patchwarden</title></head>",
        "<body><h1>Patchwarden</h1><p>The server is running. Use the <code>patchwarden</code> CLI ",
        "(<code>patchwarden devices</code>) or the HTTP API, documented at ",
        "<a href=\"/api/v1/openapi.json\">/api/v1/openapi.json</a>.</p></body></html>"
    ))
}
