/**
 * imgproxy-cache as a library: the URL helper applications use to build signed imgproxy URLs
 * and the matching cached-object URLs, plus the key scheme the proxy stores under.
 *
 * @module
 */
export * from "./lib/url_helper.ts";
export { md5Hex, normalizeFolder, objectKey, pathOf, variantSuffix } from "./lib/key.ts";
