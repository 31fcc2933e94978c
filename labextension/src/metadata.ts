/**
 * The notebook switch: metadata `"codecomp": {"enabled": false}` turns
 * completion off for one notebook (the server enforces it too).
 */
import type { INotebookModel } from '@jupyterlab/notebook';

/** Metadata key of the switch. */
export const METADATA_KEY = 'codecomp';

/** Whether the notebook allows completions (absent metadata means yes). */
export function isNotebookEnabled(model: INotebookModel | null | undefined): boolean {
  const value = model?.getMetadata(METADATA_KEY);
  return !(value && typeof value === 'object' && value.enabled === false);
}

/** Write the switch, keeping any other `codecomp` metadata. */
export function setNotebookEnabled(model: INotebookModel, enabled: boolean): void {
  const value = model.getMetadata(METADATA_KEY);
  const previous = value && typeof value === 'object' ? value : {};
  model.setMetadata(METADATA_KEY, { ...previous, enabled });
}
