/**
 * Error types shared by lib and tasks.
 * @module
 */

/** An error caused by bad user input (command-line flags, spec strings): exit code 2. */
export class UsageError extends Error {}
