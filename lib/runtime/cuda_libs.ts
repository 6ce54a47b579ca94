/**
 * What onnxruntime-node's CUDA execution provider needs to load, and the preload that makes
 * CUDA/cuDNN libraries installed by `deno task cuda-setup` (NVIDIA's PyPI wheels, outside the
 * system's library path) visible to it: the provider library has no RUNPATH, so its
 * dependencies must already be loaded (glibc matches DT_NEEDED against loaded sonames) or be on
 * the system's path.
 * @module
 */

/** The file cuda-setup writes beside the native binding: libraries to load before CUDA. */
export const CUDA_LIBS_FILE = "cuda-libs.json";

/** Where a library needed by the CUDA provider comes from. */
export type LibraryKind = "cuda" | "cudnn" | "driver" | "system";

/**
 * Kind of a shared library by its soname: the NVIDIA driver (libcuda.so.1, installed with the
 * kernel driver, only on GPU machines), cuDNN, the CUDA toolkit runtime libraries, or the C/C++
 * runtime (glibc, libstdc++).
 */
export function libraryKind(soname: string): LibraryKind {
  if (/^libcuda\.so/.test(soname) || /^libnvidia-/.test(soname)) return "driver";
  if (/^libcudnn/.test(soname)) return "cudnn";
  if (
    /^lib(cudart|cublas|cublasLt|curand|cufft|cusparse|cusolver|nvrtc|nvJitLink|nvrtc-builtins)\./
      .test(soname)
  ) {
    return "cuda";
  }
  return "system";
}

/** The directory of onnxruntime-node's native binding (where the provider must lie), if local. */
export function ortBindingDir(): string | undefined {
  try {
    const index = new URL(import.meta.resolve("npm:onnxruntime-node@1.30.0"));
    if (index.protocol !== "file:") return undefined;
    const arch = Deno.build.arch === "x86_64" ? "x64" : "arm64";
    return new URL(`../bin/napi-v6/${Deno.build.os}/${arch}/`, index).pathname;
  } catch {
    return undefined;
  }
}

/**
 * DT_NEEDED entries of an ELF64 little-endian shared library (its direct dependencies), read
 * from the section headers and the .dynamic section.
 */
export async function elfNeeded(path: string): Promise<string[]> {
  const f = await Deno.open(path, { read: true });
  try {
    const readAt = async (off: number, len: number): Promise<DataView> => {
      const buf = new Uint8Array(len);
      await f.seek(off, Deno.SeekMode.Start);
      let got = 0;
      while (got < len) {
        const n = await f.read(buf.subarray(got));
        if (n === null) throw new Error(`${path}: truncated ELF (wanted ${len} bytes at ${off})`);
        got += n;
      }
      return new DataView(buf.buffer);
    };
    const h = await readAt(0, 64);
    if (h.getUint32(0, false) !== 0x7f454c46 || h.getUint8(4) !== 2 || h.getUint8(5) !== 1) {
      throw new Error(`${path} is not a 64-bit little-endian ELF shared library`);
    }
    const shoff = Number(h.getBigUint64(0x28, true));
    const shentsize = h.getUint16(0x3a, true), shnum = h.getUint16(0x3c, true);
    const sh = await readAt(shoff, shentsize * shnum);
    for (let i = 0; i < shnum; i++) {
      const o = i * shentsize;
      if (sh.getUint32(o + 4, true) !== 6) continue; // SHT_DYNAMIC
      const off = Number(sh.getBigUint64(o + 0x18, true));
      const size = Number(sh.getBigUint64(o + 0x20, true));
      const link = sh.getUint32(o + 0x28, true) * shentsize;
      const strOff = Number(sh.getBigUint64(link + 0x18, true));
      const strSize = Number(sh.getBigUint64(link + 0x20, true));
      const dyn = await readAt(off, size),
        str = new Uint8Array((await readAt(strOff, strSize)).buffer);
      const out: string[] = [];
      for (let p = 0; p + 16 <= size; p += 16) {
        const tag = dyn.getBigInt64(p, true);
        if (tag === 0n) break;
        if (tag !== 1n) continue; // DT_NEEDED
        const s = Number(dyn.getBigUint64(p + 8, true));
        let e = s;
        while (e < str.length && str[e] !== 0) e++;
        out.push(new TextDecoder().decode(str.subarray(s, e)));
      }
      return out;
    }
    return [];
  } finally {
    f.close();
  }
}

/** Tries to load a library (by soname through the system's search path, or by absolute path). */
export function canLoad(nameOrPath: string): { ok: true } | { ok: false; error: string } {
  try {
    Deno.dlopen(nameOrPath, {});
    return { ok: true };
  } catch (e) {
    return { ok: false, error: (e as Error).message.replace(/^(Could not open library: )+/, "") };
  }
}

let preloaded: string[] | undefined;

/**
 * Loads the libraries listed in `<binding dir>/cuda-libs.json` (absolute paths, in dependency
 * order), once per process. Returns the paths loaded ([] when there is no such file); throws
 * with the failing path when a listed library does not load (rerun `deno task cuda-setup`).
 */
export function preloadCudaLibraries(dir = ortBindingDir()): string[] {
  if (preloaded) return preloaded;
  if (!dir) return preloaded = [];
  let list: string[];
  try {
    list = JSON.parse(Deno.readTextFileSync(`${dir}${CUDA_LIBS_FILE}`)).preload ?? [];
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return preloaded = [];
    throw new Error(
      `${dir}${CUDA_LIBS_FILE} is unreadable (${(e as Error).message}); rerun deno task cuda-setup`,
    );
  }
  for (const p of list) {
    const r = canLoad(p);
    if (!r.ok) {
      throw new Error(
        `CUDA library ${p} (listed in ${dir}${CUDA_LIBS_FILE}) does not load: ${r.error}; rerun deno task cuda-setup`,
      );
    }
  }
  return preloaded = list;
}
