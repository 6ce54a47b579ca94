/**
 * Error types shared by lib and tasks.
 * @module
 */

/** An error caused by bad user input (command-line flags, spec strings): exit code 2. */
export class UsageError extends Error {}

/**
 * A NaN or Inf where finite numbers were expected: `where` says which network (by file) or which
 * arithmetic produced it; the sampling loop adds the step and timestep (METHOD.md §1-2 assume
 * finite values throughout; a first non-finite value spreads to every later one).
 */
export class NonFiniteError extends Error {
  /** What produced the value: e.g. "output 'eps' of weights/x.onnx" or "the guidance arithmetic". */
  readonly where: string;
  /** The value found (NaN, Infinity or -Infinity). */
  readonly value: number;
  /** Its flat index in the array. */
  readonly index: number;
  /** Builds the error; `message` is the full text. */
  constructor(message: string, where: string, value: number, index: number) {
    super(message);
    this.where = where;
    this.value = value;
    this.index = index;
  }
}
