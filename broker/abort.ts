// Giving up on a request (its deadline, or its client gone) as the broker's
// steps see it: one AbortSignal, its reason as text, and a promise that loses
// to it. Shared by the domain queue, the fencer and the toolstacks.

/** The reason an AbortSignal carries, as text. */
export function abortReason(signal: AbortSignal | undefined): string {
  const r: unknown = signal?.reason;
  return r instanceof Error ? r.message : typeof r === 'string' ? r : 'aborted';
}

/**
 * `p`, unless `signal` fires first: then the error `toError` makes of its
 * reason. `p` itself goes on (it may be shared with others still waiting).
 */
export function unlessAborted<T>(p: Promise<T>, signal: AbortSignal | undefined, toError: (reason: string) => Error): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(toError(abortReason(signal)));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(toError(abortReason(signal)));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
