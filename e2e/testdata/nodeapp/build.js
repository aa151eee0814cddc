// Builds dist/: the server and its version file.
const fs = require("node:fs");
fs.mkdirSync("dist", { recursive: true });
fs.copyFileSync("server.js", "dist/server.js");
fs.writeFileSync("dist/VERSION", process.env.npm_package_version + "\n");
