/** The text of a thrown value, for messages: its `message` when it has one. */
export const errorMessage = (err: unknown): string => (err as Error)?.message ?? String(err);
