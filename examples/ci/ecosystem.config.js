// pm2's ecosystem file for a Node service that pushdeploy's server target deploys: ship it
// with the release (in dist/) and restart with
//
//   restart: pm2 startOrReload ecosystem.config.js --env staging
//
// which starts the app on the first deploy and reloads it on every later one ("pm2 restart
// web" fails on a first deploy: "Process or Namespace web not found").
//
// cwd is <path>/current, the link every deploy and rollback switches, never a release
// directory: pm2 keeps the directory an app was first started from, so without cwd every
// later reload would start the first release again, whatever current points to.
const path = require('path');

// The restart command runs with PUSHDEPLOY_PATH, the application's directory; by hand, run
// pm2 from <path>/current.
const root = process.env.PUSHDEPLOY_PATH || path.resolve(__dirname, '..', '..');

module.exports = {
  apps: [
    {
      name: 'web',
      cwd: path.join(root, 'current'),
      script: 'server.js',
      env: { NODE_ENV: 'production', PORT: 3000 },
      env_staging: { NODE_ENV: 'staging' },
      env_production: { NODE_ENV: 'production' },
    },
  ],
};
