// Answers every request with its version.
const http = require("node:http");
http.createServer((_, res) => res.end("nodeapp 1.0.0\n")).listen(process.env.PORT || 8080);
