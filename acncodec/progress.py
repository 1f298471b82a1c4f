"""Progress bars: drawn when asked for and stderr is a terminal, so logs and pipes get none."""

from tqdm import tqdm


def bar(iterable=None, progress: bool = True, **kwargs) -> tqdm:
    # disable=None is tqdm's "only on a terminal"
    return tqdm(iterable, disable=None if progress else True, **kwargs)
