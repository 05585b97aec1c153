"""What every mmslak dataset shares: it has at least one sample, and what
its pipeline loads can be checked before later transforms change it."""
from typing import Any

from .checks import no_samples_error

__all__ = ['NonEmptyMixin', 'LoadCheckMixin']


class NonEmptyMixin:
    """Raise ``no samples found under <root>`` instead of mmengine's
    ``need at least one array to concatenate`` when the dataset (after the
    upstream filtering) is empty. Mix in before an mmengine ``BaseDataset``
    subclass."""

    def filter_data(self):
        loaded = len(self.data_list)
        data_list = super().filter_data()
        if data_list:
            return data_list
        details = [f'data_prefix {dict(self.data_prefix)}']
        if self.ann_file:
            details.append(f'ann_file {self.ann_file!r}')
        if loaded:
            details.append(f'all {loaded} loaded samples were removed by '
                           f'filter_cfg {self.filter_cfg}')
        raise no_samples_error(
            self.data_root or self.ann_file or str(dict(self.data_prefix)),
            '; '.join(details))


class LoadCheckMixin(NonEmptyMixin):
    """Runs the pipeline one transform at a time (as mmengine's ``Compose``
    does) and calls :meth:`check_loaded` on the results right after the
    transform that first puts ``LOADED_KEY`` in them: before a later
    resize or crop changes what it loaded, and without reading any file
    again (one dict look-up per transform). A pipeline that never sets the
    key at the top level (e.g. inside ``TestTimeAug``) is not checked."""

    LOADED_KEY = ''

    def check_loaded(self, results: dict) -> None:
        """Raise :class:`~mmslak.datasets.DatasetError` on a fault in what
        was just loaded into ``results``."""
        raise NotImplementedError

    def prepare_data(self, idx) -> Any:
        results = self.get_data_info(idx)
        transforms = getattr(self.pipeline, 'transforms', None)
        if transforms is None:  # not a Compose: cannot stop in between
            return self.pipeline(results)
        pending = self.LOADED_KEY not in results
        for transform in transforms:
            results = transform(results)
            if results is None:  # as Compose: the transform gave up
                return None
            if pending and isinstance(results, dict) \
                    and self.LOADED_KEY in results:
                self.check_loaded(results)
                pending = False
        return results
