// Application bundle (excerpt).
const ORIGIN = "https://demo.test";
const API = 'https://api.demo.test/v1/';
const ESCAPED = "https:\/\/static.demo.test\/img\/logo.svg";
const UNICODE = "https:\u002F\u002Fdemo.test\u002Fu";
const UNICODE_COLON = "https\u003A\u002F\u002Fdemo.test";
const HEX = 'http:\x2F\x2Fdemo-cdn.test\x2Fh';
const RELATIVE = `//cdn.demo-cdn.test/chunk.${hash}.js`;
const SOCKET = new WebSocket("ws://live.demo.test:8080/feed");
const REDIRECT = "/oauth?redirect_uri=https%3A%2F%2Fdemo.test%2Fcallback&state=1";
const LEAVE = ["https://notdemo.test", "https://demo.testing/x", "https://demo.test.evil.net", "mailto:ops@demo.test"];
if (location.host === "demo.test") { document.domain = "demo.test"; }
fetch(ORIGIN + "/api", { credentials: "include" });
