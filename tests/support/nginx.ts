/**
 * nginx run by the tests and the benchmark: a whole nginx.conf around an `http` block, for
 * nginx in the foreground from a directory of its own, and the arguments that run it.
 */

/** What the configuration needs. */
export interface NginxConfOptions {
  /** nginx's directory: its pid file and error log go here. */
  dir: string;
  /** Where nginx keeps its temporary files (request bodies, proxied answers). */
  temp: string;
  /** `worker_connections`. */
  workerConnections: number;
  /** `worker_processes`: a count or `auto` (nginx's default, 1, when absent). */
  workers?: number | string;
  /** The body of the `http` block: upstreams, caches, servers. */
  http: string;
}

/**
 * A complete nginx.conf: in the foreground, logging only errors, every temporary path under
 * `temp` instead of the compiled-in ones, and with `user root` when run as root (the workers
 * would otherwise run as `nobody`).
 */
export function nginxConf(o: NginxConfOptions): string {
  return `${Deno.uid() === 0 ? "user root;\n" : ""}${
    o.workers === undefined ? "" : `worker_processes ${o.workers};\n`
  }daemon off;
pid ${o.dir}/nginx.pid;
error_log ${o.dir}/error.log warn;
events { worker_connections ${o.workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${o.temp}/body;
  proxy_temp_path ${o.temp}/proxy;
  fastcgi_temp_path ${o.temp}/fastcgi;
  uwsgi_temp_path ${o.temp}/uwsgi;
  scgi_temp_path ${o.temp}/scgi;
${o.http}
}
`;
}

/** nginx's arguments to run `dir`/nginx.conf with `dir` as its prefix and error log place. */
export function nginxArgs(dir: string): string[] {
  return ["-p", dir, "-e", `${dir}/error.log`, "-c", `${dir}/nginx.conf`];
}
